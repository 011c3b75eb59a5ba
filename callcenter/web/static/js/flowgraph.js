// Draws an IVR flow from the Mermaid text of GET /api/v1/flows/{name}/graph as SVG, without Mermaid itself.
//
// Only the subset ivr_flows/graph.py writes is read: `n_id["label"]` and `n_id[["label"]]` nodes, `a --> b` and
// `a -->|"label"| b` edges, and `class n_id kind`. Labels are decoded from Mermaid's entity codes and put in the
// SVG as text nodes: a flow's text (prompts, descriptions) is never parsed as markup.

const SVG = 'http://www.w3.org/2000/svg';
const CHAR_W = 6.6;
const LINE_H = 15;
const PAD = 8;
const GAP_X = 28;
const GAP_Y = 56;
const MARGIN = 20;
const MAX_ROW = 1150;
const COLOURS = {
  start: ['#dbeafe', '#1d4ed8'],
  menu: ['#f1f5f9', '#475569'],
  hours: ['#fef9c3', '#a16207'],
  queue: ['#dcfce7', '#15803d'],
  voicemail: ['#ffedd5', '#c2410c'],
  hangup: ['#e5e7eb', '#374151'],
  flow: ['#ede9fe', '#6d28d9'],
  node: ['#ffffff', '#475569'],
};
const ENTITIES = {quot: '"', lt: '<', gt: '>', 124: '|', 35: '#'};

function decode(text) {
  return text.replace(/#(quot|lt|gt|124|35);/g, (_, name) => ENTITIES[name]);
}

function labelLines(raw) {
  return raw.split('<br/>').map((part) => decode(part.replace(/<\/?b>/g, '')));
}

// {nodes: Map(id -> {id, lines, kind}), edges: [{from, to, label}], start}
export function parseMermaid(text) {
  const nodes = new Map();
  const edges = [];
  const node = /^\s*([A-Za-z0-9_]+)(\[\[|\[)"(.*)"(\]\]|\])\s*$/;
  const edge = /^\s*([A-Za-z0-9_]+)\s*-->(?:\|"(.*)"\|)?\s*([A-Za-z0-9_]+)\s*$/;
  const klass = /^\s*class\s+([A-Za-z0-9_]+)\s+([A-Za-z0-9_]+)\s*$/;
  for (const line of text.split('\n')) {
    let match = node.exec(line);
    if (match) {
      nodes.set(match[1], {id: match[1], lines: labelLines(match[3]), kind: match[2] === '[[' ? 'flow' : 'node'});
      continue;
    }
    match = edge.exec(line);
    if (match) {
      edges.push({from: match[1], to: match[3], label: match[2] ? decode(match[2]) : ''});
      continue;
    }
    match = klass.exec(line);
    if (match && nodes.has(match[1])) nodes.get(match[1]).kind = match[2];
  }
  const start = [...nodes.values()].find((item) => item.kind === 'start') || nodes.values().next().value;
  return {nodes, edges: edges.filter((item) => nodes.has(item.from) && nodes.has(item.to)), start: start?.id};
}

function layers(graph) {
  const layer = new Map();
  if (!graph.start) return layer;
  layer.set(graph.start, 0);
  const queue = [graph.start];
  while (queue.length) {
    const current = queue.shift();
    for (const item of graph.edges) {
      if (item.from === current && !layer.has(item.to)) {
        layer.set(item.to, layer.get(current) + 1);
        queue.push(item.to);
      }
    }
  }
  const last = Math.max(0, ...layer.values()) + 1;
  for (const id of graph.nodes.keys()) if (!layer.has(id)) layer.set(id, last);
  return layer;
}

function svg(tag, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== null) element.textContent = text;
  return element;
}

// The flow as an <svg> element.
export function drawFlow(graph) {
  const layer = layers(graph);
  const layered = [];
  for (const [id, index] of layer) (layered[index] ||= []).push(graph.nodes.get(id));
  // A wide layer (a menu with many choices) is wrapped into several rows, as ivr_flows/graph.py does.
  const rows = [];
  for (const row of layered.filter(Boolean)) {
    let current = [];
    let used = 0;
    for (const item of row) {
      const w = Math.max(...item.lines.map((line) => line.length)) * CHAR_W + 2 * PAD;
      if (current.length && used + w > MAX_ROW) {
        rows.push(current);
        current = [];
        used = 0;
      }
      current.push(item);
      used += w + GAP_X;
    }
    rows.push(current);
  }
  const boxes = new Map();
  let y = MARGIN;
  let width = 0;
  const rowWidths = [];
  for (const row of rows) {
    let x = 0;
    let height = 0;
    for (const item of row) {
      const w = Math.max(...item.lines.map((line) => line.length)) * CHAR_W + 2 * PAD;
      const h = item.lines.length * LINE_H + 2 * PAD;
      boxes.set(item.id, {item, x, y, w, h});
      x += w + GAP_X;
      height = Math.max(height, h);
    }
    rowWidths.push([row, x - GAP_X]);
    width = Math.max(width, x - GAP_X);
    y += height + GAP_Y;
  }
  for (const [row, rowWidth] of rowWidths) {
    const shift = MARGIN + (width - rowWidth) / 2;
    for (const item of row) boxes.get(item.id).x += shift;
  }
  const total = {w: width + 2 * MARGIN, h: y - GAP_Y + MARGIN};
  const root = svg('svg', {width: total.w, height: total.h, viewBox: `0 0 ${total.w} ${total.h}`, role: 'img'});
  const defs = svg('defs');
  const marker = svg('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'});
  marker.append(svg('path', {d: 'M 0 0 L 10 5 L 0 10 z', fill: '#475569'}));
  defs.append(marker);
  root.append(defs);
  for (const item of graph.edges) {
    const a = boxes.get(item.from);
    const b = boxes.get(item.to);
    const down = b.y > a.y;
    const x1 = a.x + a.w / 2;
    const y1 = down ? a.y + a.h : a.y + a.h / 2;
    const x2 = b.x + b.w / 2;
    const y2 = down ? b.y : b.y + b.h / 2;
    // A loop back up goes round the right-hand side instead of through the boxes between.
    const bend = down ? `C ${x1} ${y1 + GAP_Y / 2} ${x2} ${y2 - GAP_Y / 2} ${x2} ${y2}`
      : `C ${Math.max(a.x + a.w, b.x + b.w) + 60} ${y1} ${Math.max(a.x + a.w, b.x + b.w) + 60} ${y2} ${b.x + b.w} ${y2}`;
    root.append(svg('path', {d: `M ${x1} ${y1} ${bend}`, fill: 'none', stroke: '#475569', 'stroke-width': 1.3, 'marker-end': 'url(#arrow)'}));
    if (item.label) {
      const lx = down ? (x1 + x2) / 2 : Math.max(a.x + a.w, b.x + b.w) + 50;
      const ly = down ? (y1 + y2) / 2 : (y1 + y2) / 2;
      const w = item.label.length * CHAR_W * 0.9 + 6;
      root.append(svg('rect', {x: lx - w / 2, y: ly - 9, width: w, height: 16, rx: 3, fill: '#ffffff', opacity: 0.9}));
      root.append(svg('text', {x: lx, y: ly + 3, 'text-anchor': 'middle', 'font-size': 11, fill: '#334155'}, item.label));
    }
  }
  for (const box of boxes.values()) {
    const [fill, stroke] = COLOURS[box.item.kind] || COLOURS.node;
    const group = svg('g', {'data-node': box.item.id});
    group.append(svg('rect', {x: box.x, y: box.y, width: box.w, height: box.h, rx: 6, fill, stroke, 'stroke-width': 1.5}));
    box.item.lines.forEach((line, index) => {
      group.append(svg('text', {
        x: box.x + PAD, y: box.y + PAD + (index + 1) * LINE_H - 4, 'font-size': 12,
        'font-weight': index === 0 ? 700 : 400, fill: '#0f172a',
      }, line));
    });
    root.append(group);
  }
  return root;
}
