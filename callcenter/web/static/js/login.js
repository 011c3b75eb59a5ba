// The login page: POST /api/v1/login sets the HttpOnly session cookie; then on to the page asked for, or to the
// first page the user's roles allow. A logged-in visitor is offered those pages and a logout.
import {PAGES, api, byId, fill, h, pagesFor} from './common.js';

function wanted() {
  const next = new URLSearchParams(location.search).get('next') || '';
  // Only this server's own pages: never an address another site could have put in the link.
  const path = next.split('?')[0];
  return PAGES.some((page) => page.path === path) ? next : null;
}

function go(me) {
  const next = wanted();
  const allowed = pagesFor(me.permissions);
  const target = next && allowed.some((page) => next.split('?')[0] === page.path) ? next : allowed[0]?.path;
  if (target) {
    location.assign(target);
    return true;
  }
  return false;
}

function showLoggedIn(me) {
  byId('login-form').classList.add('hidden');
  const box = byId('already');
  box.classList.remove('hidden');
  const pages = pagesFor(me.permissions);
  fill(box,
    h('p', {}, 'Logged in as ', h('strong', {}, me.display_name || me.username), '.'),
    pages.length
      ? h('ul', {}, pages.map((page) => h('li', {}, h('a', {href: page.path}, page.title))))
      : h('p', {class: 'note'}, 'Your roles give you no page here; ask an admin.'),
    h('button', {type: 'button', class: 'secondary', onclick: async () => {
      await api('/api/v1/logout', {method: 'POST', stay: true}).catch(() => null);
      location.assign('/login');
    }}, 'Log out'));
}

async function submit(event) {
  event.preventDefault();
  const error = byId('login-error');
  error.classList.add('hidden');
  const button = byId('login-button');
  button.disabled = true;
  try {
    const result = await api('/api/v1/login', {
      method: 'POST', stay: true,
      body: {username: byId('username').value, password: byId('password').value},
    });
    byId('password').value = '';
    if (!go(result.user)) showLoggedIn(result.user);
  } catch (failure) {
    error.textContent = failure.message || String(failure);
    error.classList.remove('hidden');
  } finally {
    button.disabled = false;
  }
}

async function start() {
  byId('login-form').addEventListener('submit', submit);
  try {
    const me = await api('/api/v1/me', {stay: true});
    if (!(wanted() && go(me))) showLoggedIn(me);
  } catch {
    byId('username').focus();
  }
}

start();
