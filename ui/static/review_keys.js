// The review queue's keyboard: the body of a gr.HTML's js_on_load. One document listener (installed
// once per page) turns a key into a click on the queue's buttons, but only while the queue is on
// screen and the reviewer is not typing in a text box.
if (!window.safecbReviewKeys) {
  window.safecbReviewKeys = true;
  const keys = {u: 'q-unsafe', s: 'q-safe', r: 'q-reveal', j: 'q-next', arrowright: 'q-next',
                k: 'q-prev', arrowleft: 'q-prev'};
  document.addEventListener('keydown', (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const target = ev.target;
    const typing = target && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
    if (typing) return;
    const id = keys[ev.key.toLowerCase()];
    if (!id) return;
    const root = document.getElementById(id);
    const button = root && (root.tagName === 'BUTTON' ? root : root.querySelector('button'));
    if (!button || button.offsetParent === null || button.disabled) return;  // hidden tab or busy
    ev.preventDefault();
    button.click();
  });
}
