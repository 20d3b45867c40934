// The review queue's keyboard: the body of a gr.HTML's js_on_load. One document listener (installed
// once per page) turns a key into a click on the queue's buttons, but only while the queue is on
// screen, the reviewer is not typing in a text box, and the page is not waiting for the answer to
// the previous key. Gradio leaves a button enabled while its request is in flight, so without that
// wait a quick second key acted on an image the screen had not shown yet. A key pressed while the
// page waits, or while the new image is still loading, is dropped; each queue event ends with
// `ready()` (flagged_tab.KEYS_READY_JS). The server refuses a verdict whose shown image is not the
// queue's current one as well, so a dropped wait (BUSY_LIMIT_MS) cannot mislabel either.
if (!window.safecbReviewKeys) {
  const BUSY_LIMIT_MS = 10000;  // a request whose answer never came must not lock the keys for good
  const keys = {u: 'q-unsafe', s: 'q-safe', r: 'q-reveal', j: 'q-next', arrowright: 'q-next',
                k: 'q-prev', arrowleft: 'q-prev'};
  let sentAt = 0;  // when the last key's request went out; 0 once its answer is on the page
  const imageLoading = () => {
    const img = document.querySelector('#q-image img');
    return Boolean(img && !img.complete);
  };
  window.safecbReviewKeys = {
    ready() { sentAt = 0; },
    idle() { return !(sentAt && performance.now() - sentAt < BUSY_LIMIT_MS) && !imageLoading(); },
  };
  document.addEventListener('keydown', (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const target = ev.target;
    const typing = target && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
    if (typing) return;
    const id = keys[ev.key.toLowerCase()];
    if (!id) return;
    const root = document.getElementById(id);
    const button = root && (root.tagName === 'BUTTON' ? root : root.querySelector('button'));
    if (!button || button.offsetParent === null || button.disabled) return;  // hidden tab or disabled
    ev.preventDefault();
    if (!window.safecbReviewKeys.idle()) return;  // the screen has not caught up with the last key yet
    sentAt = performance.now();
    button.click();
  });
}
