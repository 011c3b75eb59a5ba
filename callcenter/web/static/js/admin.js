// Admin: users with their roles and teams (and a new-user form), the audit log with filters, and the IVR flows
// with their validation state and diagrams. Each tab shows only when the user holds its permission.
import {
  ApiError, api, byId, fill, h, localToIso, notify, option, pageOf, reportError, startPage, when,
} from './common.js';
import {drawFlow, parseMermaid} from './flowgraph.js';

const ROLES = {
  agent: 'takes calls from the general queue; screen-pop, service records, on-demand recording, expert handoff',
  expert: 'takes calls handed over by agents, from the expert queue',
  supervisor: 'sees the live board and statistics; listens, whispers and barges in on their teams',
  qa: 'searches and plays recordings',
  admin: 'manages users, reads the audit log, manages the IVR flows and erases recordings on request',
};
const COMMON_ACTIONS = [
  'login', 'login_failed', 'login_locked', 'logout', 'user_created', 'seat.login', 'seat.pause', 'seat.unpause',
  'seat.logout', 'spy.start', 'spy.mode', 'spy.end', 'spy.refused', 'recording_played', 'recording_edited',
  'recording_refused', 'recording_tampered', 'recordings_erased', 'customer_created', 'customer_updated',
  'callback.started',
];

const state = {can: () => false, audit: {query: {}, offset: 0, total: 0}};

function list(values) {
  return (values || []).join(', ');
}

function split(text) {
  return String(text || '').split(',').map((part) => part.trim()).filter(Boolean);
}

// -- tabs ---------------------------------------------------------------------------------------------------------

const TABS = [
  {tab: 'tab-users', section: 'users-section', permission: 'users.read', load: loadUsers},
  {tab: 'tab-audit', section: 'audit-section', permission: 'audit.read', load: () => loadAudit(0)},
  {tab: 'tab-flows', section: 'flows-section', permission: 'flows.manage', load: loadFlows},
];

function show(chosen) {
  for (const item of TABS) {
    const active = item === chosen;
    byId(item.tab).setAttribute('aria-selected', String(active));
    byId(item.section).classList.toggle('hidden', !active);
  }
  if (!chosen.loaded) {
    chosen.loaded = true;
    chosen.load();
  }
  history.replaceState(null, '', `#${chosen.section.replace('-section', '')}`);
}

// -- users --------------------------------------------------------------------------------------------------------

async function loadUsers() {
  try {
    const users = (await api('/api/v1/users')).items;
    fill(byId('users'), h('table', {id: 'users-table'},
      h('thead', {}, h('tr', {}, ['User', 'Name', 'Roles', 'Teams', 'Leads', 'Phone', 'Active', 'Created'].map((name) => h('th', {}, name)))),
      h('tbody', {}, users.map((user) => h('tr', {dataset: {user: String(user.id)}},
        h('td', {class: 'mono'}, user.username),
        h('td', {}, user.display_name || ''),
        h('td', {}, (user.roles || []).map((role) => h('span', {class: 'badge info'}, role)), ' '),
        h('td', {}, list(user.teams)),
        h('td', {}, list(user.lead_of)),
        h('td', {class: 'mono'}, user.extension || ''),
        h('td', {}, user.is_active ? h('span', {class: 'badge ok'}, 'yes') : h('span', {class: 'badge bad'}, 'no')),
        h('td', {class: 'small'}, when(user.created_at)))))));
    const teams = new Map();
    for (const user of users) {
      for (const team of user.teams || []) (teams.get(team) || teams.set(team, {members: [], leads: []}).get(team)).members.push(user.username);
      for (const team of user.lead_of || []) (teams.get(team) || teams.set(team, {members: [], leads: []}).get(team)).leads.push(user.username);
    }
    fill(byId('teams'), teams.size ? h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Team'), h('th', {}, 'Led by'), h('th', {}, 'Members'))),
      h('tbody', {}, [...teams.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([team, info]) => h('tr', {},
        h('td', {}, team), h('td', {}, list(info.leads)), h('td', {}, list(info.members))))))
      : h('p', {class: 'empty'}, 'No teams yet.'));
  } catch (error) {
    reportError(error);
  }
}

function wireUserForm() {
  const form = byId('user-form');
  if (!state.can('users.manage')) {
    form.classList.add('hidden');
    return;
  }
  fill(byId('role-boxes'), Object.keys(ROLES).map((role) => h('label', {},
    h('input', {type: 'checkbox', name: 'roles', value: role}), role, ' ')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = {
      username: String(data.get('username') || ''),
      password: String(data.get('password') || ''),
      roles: data.getAll('roles').map(String),
      teams: split(data.get('teams')),
      lead_of: split(data.get('lead_of')),
      is_active: data.get('is_active') !== null,
    };
    const displayName = String(data.get('display_name') || '').trim();
    if (displayName) body.display_name = displayName;
    const extension = String(data.get('extension') || '').trim();
    if (extension) body.extension = extension;
    try {
      const created = await api('/api/v1/users', {method: 'POST', body});
      notify(`User ${created.username} created.`, 'ok');
      form.reset();
      loadUsers();
    } catch (error) {
      reportError(error);
    }
  });
}

// -- audit --------------------------------------------------------------------------------------------------------

function readAuditQuery(form) {
  const query = {};
  for (const [key, raw] of new FormData(form).entries()) {
    const value = String(raw).trim();
    if (value) query[key] = key === 'since' || key === 'until' ? localToIso(value) : value;
  }
  return query;
}

async function loadAudit(offset) {
  state.audit.offset = offset;
  try {
    const page = await api('/api/v1/audit', {query: {...state.audit.query, offset}});
    state.audit.total = page.total;
    const first = page.items.length ? offset + 1 : 0;
    byId('audit-info').textContent = `${first}–${offset + page.items.length} of ${page.total}`;
    byId('audit-prev').disabled = offset === 0;
    byId('audit-next').disabled = offset + page.items.length >= page.total;
    fill(byId('audit'), page.items.length ? h('table', {id: 'audit-table'},
      h('thead', {}, h('tr', {}, ['When', 'Who', 'Action', 'Target', 'Outcome', 'From', 'Details'].map((name) => h('th', {}, name)))),
      h('tbody', {}, page.items.map((item) => h('tr', {},
        h('td', {class: 'small'}, when(item.at)),
        h('td', {class: 'mono'}, item.actor || '—'),
        h('td', {}, item.action),
        h('td', {class: 'mono'}, item.target || ''),
        h('td', {}, h('span', {class: `badge ${item.outcome === 'ok' || item.outcome === 'success' ? 'ok' : 'warn'}`}, item.outcome)),
        h('td', {class: 'mono small'}, item.remote_addr || ''),
        h('td', {class: 'mono small pre'}, Object.keys(item.details || {}).length ? JSON.stringify(item.details) : '')))))
      : h('p', {class: 'empty'}, 'Nothing in the log matches.'));
  } catch (error) {
    reportError(error);
  }
}

function wireAudit() {
  const form = byId('audit-form');
  fill(byId('audit-actions'), COMMON_ACTIONS.map((action) => option(action)));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    state.audit.query = readAuditQuery(form);
    loadAudit(0);
  });
  form.addEventListener('reset', () => setTimeout(() => {
    state.audit.query = readAuditQuery(form);
    loadAudit(0);
  }));
  const size = () => Number(state.audit.query.limit || 100);
  byId('audit-prev').addEventListener('click', () => loadAudit(Math.max(0, state.audit.offset - size())));
  byId('audit-next').addEventListener('click', () => loadAudit(state.audit.offset + size()));
}

// -- flows --------------------------------------------------------------------------------------------------------

function issueList(issues) {
  if (!issues || !issues.length) return null;
  return h('ul', {class: 'small'}, issues.map((issue) => h('li', {},
    h('span', {class: 'mono'}, `${issue.file}${issue.line ? `:${issue.line}` : ''}`), ' ',
    h('span', {class: 'badge warn'}, issue.kind), ' ', issue.message)));
}

async function showGraph(name) {
  byId('flow-title').textContent = `Diagram: ${name}`;
  try {
    const text = await api(`/api/v1/flows/${encodeURIComponent(name)}/graph`);
    const diagram = byId('flow-diagram');
    fill(diagram, drawFlow(parseMermaid(String(text))));
    diagram.classList.remove('hidden');
    diagram.dataset.flow = name;
    byId('flow-text').textContent = String(text);
    byId('flow-source').classList.remove('hidden');
    byId('flow-hint').classList.add('hidden');
  } catch (error) {
    reportError(error);
  }
}

async function loadFlows() {
  try {
    const listing = await api('/api/v1/flows');
    byId('flows-summary').textContent = `entry ${listing.entry} · ${listing.directory}`
      + (listing.last_reload ? ` · last reload ${when(listing.last_reload.at)}` : '');
    fill(byId('flows'), h('table', {id: 'flows-table'},
      h('thead', {}, h('tr', {}, ['Flow', 'File', 'Running', 'Valid', 'Start', 'Nodes', 'Languages', 'Problems', ''].map((name) => h('th', {}, name)))),
      h('tbody', {}, listing.items.map((flow) => h('tr', {dataset: {flow: flow.name || ''}},
        h('td', {}, h('strong', {}, flow.name || '?'), flow.description ? h('div', {class: 'small muted'}, flow.description) : null),
        h('td', {class: 'mono small'}, flow.file),
        h('td', {}, flow.running ? h('span', {class: 'badge ok'}, 'running') : h('span', {class: 'badge'}, 'not running')),
        h('td', {}, flow.valid ? h('span', {class: 'badge ok'}, 'valid') : h('span', {class: 'badge bad'}, 'invalid')),
        h('td', {class: 'mono'}, flow.start || ''),
        h('td', {}, flow.nodes ?? ''),
        h('td', {}, list(flow.languages)),
        h('td', {}, issueList(flow.issues) || ''),
        h('td', {}, flow.running && flow.name ? h('button', {type: 'button', class: 'secondary', onclick: () => showGraph(flow.name)}, 'Diagram') : null))))));
    fill(byId('flow-issues'), listing.issues.length ? [h('h3', {}, 'Problems'), issueList(listing.issues)] : null);
    const first = listing.items.find((flow) => flow.running && flow.name === listing.entry) || listing.items.find((flow) => flow.running);
    if (first && !byId('flow-diagram').dataset.flow) showGraph(first.name);
  } catch (error) {
    reportError(error);
  }
}

function wireFlows() {
  byId('flows-reload').addEventListener('click', async () => {
    try {
      const result = await api('/api/v1/flows/reload', {method: 'POST', body: {}});
      notify(`Reloaded: ${list(result.flows)} running.`, 'ok');
    } catch (error) {
      const issues = error instanceof ApiError ? error.details?.issues : null;
      reportError(error);
      if (issues) fill(byId('flow-issues'), h('h3', {}, 'The new files were refused'), issueList(issues));
    }
    loadFlows();
  });
}

// -- start --------------------------------------------------------------------------------------------------------

async function start() {
  const page = await startPage(pageOf('/admin'));
  if (!page) return;
  state.can = page.can;
  fill(byId('roles'), h('table', {}, h('tbody', {}, Object.entries(ROLES).map(([role, text]) => h('tr', {},
    h('td', {}, h('span', {class: 'badge info'}, role)), h('td', {class: 'small'}, text))))));
  wireUserForm();
  wireAudit();
  wireFlows();
  const allowed = TABS.filter((item) => state.can(item.permission));
  for (const item of TABS) {
    if (!allowed.includes(item)) byId(item.tab).classList.add('hidden');
    byId(item.tab).addEventListener('click', () => show(item));
  }
  const wanted = allowed.find((item) => `#${item.section.replace('-section', '')}` === location.hash);
  show(wanted || allowed[0]);
}

start().catch(reportError);


