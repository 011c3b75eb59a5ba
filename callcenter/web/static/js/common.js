// What every page shares: building DOM as text (never HTML), calling the API, the header, the websocket, clocks.
//
// Caller-controlled text (names, numbers, notes, descriptions, usernames) only ever reaches the page through
// textContent or createTextNode, by way of h() below; no page parses data as HTML.

const JSON_TYPE = 'application/json';

// -- DOM --------------------------------------------------------------------------------------------------------

function appendChildren(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// h('div', {class: 'x', text: 'y', onclick: fn}, child, 'text', [more]) -> an element. Strings become text nodes.
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'value') node.value = String(value);
    else if (key === 'checked' || key === 'disabled' || key === 'selected' || key === 'required') node[key] = true;
    else {
      if ((key === 'href' || key === 'src') && !/^\/(?!\/)/.test(String(value))) {
        throw new Error(`only same-origin paths may go in ${key}`);
      }
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  appendChildren(node, children);
  return node;
}

export function fill(node, ...children) {
  node.replaceChildren();
  appendChildren(node, children);
  return node;
}

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}

export function option(value, label, selected = false) {
  return h('option', {value, selected}, label ?? value);
}

// -- formatting -------------------------------------------------------------------------------------------------

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '—';
  const total = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = String(total % 60).padStart(2, '0');
  return hours ? `${hours}:${String(minutes).padStart(2, '0')}:${secs}` : `${minutes}:${secs}`;
}

export function when(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, {
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

export function percent(ratio) {
  return ratio === null || ratio === undefined ? '—' : `${Math.round(ratio * 100)}%`;
}

// A datetime-local input's value (local time) as ISO 8601 with the browser's offset, or undefined.
export function localToIso(value) {
  if (!value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

export function label(text) {
  return String(text ?? '').replaceAll('_', ' ');
}

// -- the server's clock and ticking durations -------------------------------------------------------------------

// Milliseconds the browser's clock runs ahead of the server's, learned from the "at" of frames and responses.
let skew = 0;

export function syncClock(serverIso) {
  const server = Date.parse(serverIso);
  if (!Number.isNaN(server)) skew = Date.now() - server;
}

export function serverNow() {
  return Date.now() - skew;
}

// A `since` as the API sends it (epoch seconds or ISO 8601) in epoch milliseconds, or null.
export function sinceMs(value) {
  if (value === null || value === undefined || value === '') return null;
  if (typeof value === 'number') return value * 1000;
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? null : parsed;
}

// An element whose text counts up every second from `since` (epoch ms).
export function ticker(since, props = {}) {
  const node = h('span', {...props, class: `tick ${props.class || ''}`.trim()});
  setTicker(node, since);
  return node;
}

export function setTicker(node, since) {
  if (since === null || since === undefined) {
    delete node.dataset.since;
    node.textContent = '—';
    return;
  }
  node.dataset.since = String(since);
  node.textContent = duration((serverNow() - since) / 1000);
}

setInterval(() => {
  const now = serverNow();
  for (const node of document.querySelectorAll('[data-since]')) {
    node.textContent = duration((now - Number(node.dataset.since)) / 1000);
  }
}, 1000);

// -- notices ----------------------------------------------------------------------------------------------------

let noticeTimer = null;

export function notify(message, kind = 'info') {
  const node = document.getElementById('notice');
  if (!node) return;
  node.className = kind;
  node.textContent = message;
  clearTimeout(noticeTimer);
  if (kind !== 'error') noticeTimer = setTimeout(() => { node.textContent = ''; node.className = ''; }, 6000);
}

export function reportError(error) {
  notify(error instanceof ApiError ? error.message : `Something went wrong: ${error}`, 'error');
}

// -- the API ----------------------------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, body) {
    const error = body && typeof body === 'object' ? body.error : null;
    super(error && error.message ? error.message : `the server answered ${status}`);
    this.status = status;
    this.id = error ? error.id : null;
    this.details = error ? error.details : null;
  }
}

export function toLogin() {
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
}

// Calls the API with the session cookie. A 401 sends the browser to the login page unless `stay` is set.
export async function api(path, {method = 'GET', body, query, stay = false} = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, String(value));
  }
  const init = {method, credentials: 'same-origin', headers: {Accept: JSON_TYPE}};
  if (body !== undefined) {
    init.headers['Content-Type'] = JSON_TYPE;
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const type = response.headers.get('Content-Type') || '';
  const data = type.startsWith(JSON_TYPE) ? await response.json().catch(() => null) : await response.text();
  if (!response.ok) {
    if (response.status === 401 && !stay) toLogin();
    throw new ApiError(response.status, data);
  }
  return data;
}

let openapi = null;

// The merged OpenAPI document: which routes this server has (e.g. recording control) and the enums.
export async function apiDocument() {
  openapi ??= api('/api/v1/openapi.json').catch(() => ({paths: {}, components: {schemas: {}}}));
  return openapi;
}

export function schemaEnum(document, name) {
  const schema = document?.components?.schemas?.[name];
  return Array.isArray(schema?.enum) ? schema.enum : [];
}

// -- the page frame ---------------------------------------------------------------------------------------------

export const PAGES = [
  {path: '/agent', title: 'Agent', any: ['seats.own']},
  {path: '/supervisor', title: 'Wallboard', any: ['seats.read']},
  {path: '/qa', title: 'QA', any: ['recordings.search']},
  {path: '/admin', title: 'Admin', any: ['users.read', 'audit.read', 'flows.manage']},
  {path: '/desk', title: 'Service desk', any: ['desk.work']},
];

export function pagesFor(permissions) {
  return PAGES.filter((page) => page.any.some((permission) => permissions.includes(permission)));
}

// Set while this page logs out: the server then closes its websocket (4401), and the page is on its way already.
let loggingOut = false;

async function logout() {
  loggingOut = true;
  try {
    await api('/api/v1/logout', {method: 'POST', stay: true});
  } catch {
    // Logged out already, or the server is gone: either way the login page is next.
  }
  location.assign('/login');
}

function header(me) {
  const nav = h('nav', {'aria-label': 'pages'},
    pagesFor(me.permissions).map((page) => h('a', {
      href: page.path, 'aria-current': page.path === location.pathname ? 'page' : null,
    }, page.title)));
  return h('header', {class: 'topbar'},
    h('span', {class: 'brand'}, 'callcenter'),
    nav,
    h('span', {id: 'live', class: 'live-dot hidden', title: 'live updates: connecting'}),
    h('span', {class: 'who'}, me.display_name || me.username, me.extension ? ` · ext ${me.extension}` : ''),
    h('button', {type: 'button', class: 'secondary', onclick: logout}, 'Log out'));
}

// Loads the logged-in user (or goes to the login page), draws the header; null when the user may not use the page.
export async function startPage(page) {
  const me = await api('/api/v1/me');
  document.body.prepend(header(me), h('div', {id: 'notice', role: 'status', 'aria-live': 'polite'}));
  const can = (permission) => me.permissions.includes(permission);
  if (page && !page.any.some(can)) {
    fill(document.querySelector('main'), h('section', {class: 'panel'},
      h('h1', {}, 'Not for your roles'),
      h('p', {}, `This page needs one of: ${page.any.join(', ')}. Your roles: ${me.roles.join(', ') || 'none'}.`)));
    return null;
  }
  return {me, can};
}

export function pageOf(path) {
  return PAGES.find((page) => page.path === path);
}

// -- the websocket ----------------------------------------------------------------------------------------------

// Opens /api/v1/ws and keeps it open: reconnects with backoff, pings, and tells `onOpen` so the page can reload
// what it may have missed while it was away.
export function liveSocket(onFrame, {onOpen} = {}) {
  let attempts = 0;
  let pinger = null;
  const dot = () => document.getElementById('live');
  dot()?.classList.remove('hidden');

  const status = (state, title) => {
    const node = dot();
    if (node) {
      node.className = `live-dot ${state}`;
      node.title = title;
    }
  };

  const connect = () => {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}/api/v1/ws`);
    socket.addEventListener('open', () => {
      attempts = 0;
      status('live', 'live updates: connected');
      pinger = setInterval(() => {
        if (socket.readyState === WebSocket.OPEN) socket.send('{"type":"ping"}');
      }, 25000);
      if (onOpen) onOpen();
    });
    socket.addEventListener('message', (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame.at === 'string') syncClock(frame.at);
      if (frame && typeof frame.type === 'string') onFrame(frame);
    });
    socket.addEventListener('close', async (event) => {
      clearInterval(pinger);
      if (loggingOut) return;
      // The server closes a socket whose session ended (4401: logged out elsewhere, expired, user disabled) and one
      // whose user lost a permission (4403): log in again, or reload to see what the page may show now.
      if (event.code === 4401) {
        toLogin();
        return;
      }
      if (event.code === 4403) {
        location.reload();
        return;
      }
      status('offline', 'live updates: reconnecting');
      attempts += 1;
      // A refused upgrade looks like any other close: an expired session goes to the login page from here.
      try {
        await api('/api/v1/me');
      } catch {
        // The server is down: keep trying.
      }
      const wait = Math.min(30000, 500 * 2 ** Math.min(attempts, 6)) + Math.random() * 500;
      setTimeout(connect, wait);
    });
  };
  connect();
}
