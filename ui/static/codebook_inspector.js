// The Codebook map's hover inspector: the body of the gr.HTML's js_on_load, which Gradio runs with
// element (the component's root), props (map_id: the map's DOM id), server (code_patches) and trigger.
// It binds plotly's hover/click events on the map's graph div. It polls because Gradio mounts the plot
// lazily and plotly re-creates its event emitter (gd.on) when it redraws from scratch.
const cache = new Map();
const seen = new WeakMap();
let wanted = null;
const q = (s) => element.querySelector(s);
function render(r) {
  if (!r || !r.ok) { q('.cbm-title').textContent = 'No patch: ' + (r ? r.text : 'no answer'); return; }
  q('.cbm-a').src = r.a; q('.cbm-b').src = r.b;
  q('.cbm-la').textContent = r.label_a; q('.cbm-lb').textContent = r.label_b;
  q('.cbm-title').textContent = 'code ' + r.code;
  q('.cbm-text').textContent = r.text;
}
function show(gd, ev, pin) {
  const p = ev && ev.points && ev.points[0];
  const meta = gd.layout && gd.layout.meta && gd.layout.meta.safecb;
  if (!p || !meta || p.customdata === undefined || p.customdata === null) return;
  const code = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
  if (typeof code !== 'number') return;
  const data = Object.assign({}, meta, {code: code});
  if (pin) trigger('click', data);
  const key = JSON.stringify(data);
  wanted = key;
  if (cache.has(key)) { render(cache.get(key)); return; }
  q('.cbm-title').textContent = 'code ' + code + ' …';
  server.code_patches(data).then((r) => {
    cache.set(key, r);
    if (cache.size > 800) cache.delete(cache.keys().next().value);
    if (wanted === key) render(r);
  }).catch((e) => { if (wanted === key) q('.cbm-title').textContent = 'No patch: ' + e; });
}
function bind() {
  const host = document.getElementById(props.map_id);
  const gd = host && host.querySelector('.js-plotly-plot');
  if (!gd || typeof gd.on !== 'function' || seen.get(gd) === gd.on) return;
  seen.set(gd, gd.on);
  gd.on('plotly_hover', (ev) => show(gd, ev, false));
  gd.on('plotly_click', (ev) => show(gd, ev, true));
}
bind();
setInterval(bind, 500);
