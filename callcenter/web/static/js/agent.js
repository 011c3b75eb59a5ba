// The agent desktop: the seat (queues, pause, logout), the screen-pop as the phone rings, the service record of
// the current call, the knowledge base, recording control, the expert handoff and callbacks. The phone itself is
// a separate SIP phone; this page never carries audio.
import {
  api, apiDocument, byId, duration, fill, h, label, liveSocket, localToIso, notify, option, pageOf, reportError,
  schemaEnum, setTicker, sinceMs, startPage, when,
} from './common.js';

const RECORDING_ROUTE = '/api/v1/calls/{linkedid}/recording';
const RECORD_TYPES_FALLBACK = [
  'product_guide', 'fault_consultation', 'business_consultation', 'repair_booking', 'installation_booking',
  'complaint', 'suggestion', 'callback_visit', 'voicemail',
];

const state = {
  me: null,
  can: () => false,
  options: {reasons: [], queues: [], max_penalty: 100},
  seat: null,
  stateFrames: 0,
  // The call the forms act on: the latest screen-pop, or the seat's call when the page opened mid-call.
  call: null,
  recordingControl: false,
  lastRecordId: null,
  idempotencyKey: null,
};

function newKey() {
  state.idempotencyKey = crypto.randomUUID ? crypto.randomUUID()
    : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

// -- seat ---------------------------------------------------------------------------------------------------------

function showSeatState(status, since, reason) {
  const badge = byId('seat-state');
  badge.className = `badge state-${status}`;
  badge.textContent = label(status) + (status === 'paused' && reason ? ` (${label(reason)})` : '');
  setTicker(byId('seat-since'), status === 'logged_out' ? null : sinceMs(since));
  const loggedIn = status !== 'logged_out';
  byId('pause-button').disabled = !loggedIn || status === 'paused';
  byId('unpause-button').disabled = status !== 'paused';
  byId('seat-logout-button').disabled = !loggedIn;
}

function showSeat(seat) {
  state.seat = seat;
  byId('seat-phone').textContent = `Phone ${seat.extension} (${seat.interface})`;
  showSeatState(seat.state, seat.state_since, seat.pause_reason);
  const current = new Map((seat.queues || []).map((item) => [item.queue, item.penalty]));
  const rows = state.options.queues.map((queue) => h('div', {class: 'queue-row'},
    h('label', {}, h('input', {type: 'checkbox', name: 'queue', value: queue, checked: current.has(queue) || current.size === 0}), queue),
    h('label', {class: 'small muted'}, 'penalty',
      h('input', {type: 'number', name: `penalty-${queue}`, min: 0, max: state.options.max_penalty, value: current.get(queue) ?? 0, 'aria-label': `penalty in ${queue}`}))));
  fill(byId('seat-queues'), rows.length ? rows : h('p', {class: 'empty'}, 'Your roles give you no queue.'));
  if (seat.linkedid && (!state.call || state.call.linkedid !== seat.linkedid)) {
    setCall({linkedid: seat.linkedid, caller: null});
  }
}

// A seat as an answer of the API shows it, unless an agent_state frame came while the request was on its way:
// the frame is newer, so its state stays.
function fresher(seat, framesBefore) {
  if (state.stateFrames === framesBefore || !state.seat) return seat;
  return {...seat, state: state.seat.state, state_since: state.seat.state_since, pause_reason: state.seat.pause_reason};
}

async function loadSeat() {
  const framesBefore = state.stateFrames;
  try {
    showSeat(fresher(await api('/api/v1/agents/me'), framesBefore));
  } catch (error) {
    byId('seat-phone').textContent = error.message;
    for (const id of ['seat-login-button', 'pause-button', 'unpause-button', 'seat-logout-button']) byId(id).disabled = true;
  }
}

async function seatAction(path, body) {
  const framesBefore = state.stateFrames;
  try {
    showSeat(fresher(await api(path, {method: 'POST', body: body ?? {}}), framesBefore));
  } catch (error) {
    reportError(error);
  }
}

function wireSeat() {
  fill(byId('pause-reason'), state.options.reasons.map((reason) => option(reason, label(reason))));
  byId('seat-login').addEventListener('submit', (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const queues = [...form.querySelectorAll('input[name="queue"]:checked')].map((box) => ({
      queue: box.value,
      penalty: Number(form.querySelector(`input[name="penalty-${box.value}"]`).value || 0),
    }));
    if (!queues.length) {
      notify('Tick at least one queue.', 'error');
      return;
    }
    seatAction('/api/v1/agents/me/login', {queues});
  });
  byId('seat-pause').addEventListener('submit', (event) => {
    event.preventDefault();
    seatAction('/api/v1/agents/me/pause', {reason: byId('pause-reason').value});
  });
  byId('unpause-button').addEventListener('click', () => seatAction('/api/v1/agents/me/unpause'));
  byId('seat-logout-button').addEventListener('click', () => seatAction('/api/v1/agents/me/logout'));
}

// -- screen-pop ---------------------------------------------------------------------------------------------------

function records(title, items) {
  if (!items || !items.length) return null;
  return h('div', {},
    h('h3', {}, title),
    h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'Type'), h('th', {}, 'Status'), h('th', {}, 'Created'), h('th', {}, 'Content'))),
      h('tbody', {}, items.map((item) => h('tr', {},
        h('td', {}, String(item.id)),
        h('td', {}, label(item.type)),
        h('td', {}, h('span', {class: 'badge'}, label(item.status))),
        h('td', {class: 'small'}, when(item.created_at)),
        h('td', {class: 'pre'}, item.content || ''))))));
}

function customerCard(file) {
  const customer = file.customer;
  return h('article', {class: 'customer-card', dataset: {customerId: String(customer.id)}},
    h('div', {class: 'row'},
      h('span', {class: 'customer-name'}, customer.name),
      h('span', {class: `badge tier-${customer.tier}`}, customer.tier),
      customer.churn_risk ? h('span', {class: 'badge bad'}, 'churn risk') : null),
    customer.company ? h('div', {}, customer.company) : null,
    h('div', {class: 'small muted'},
      (customer.phones || []).map((phone) => `${phone.number} (${phone.kind})`).join(' · '),
      customer.account_manager ? ` · account manager ${customer.account_manager}` : ''),
    customer.address ? h('div', {class: 'small pre'}, customer.address) : null,
    customer.notes ? h('div', {class: 'small pre'}, customer.notes) : null,
    file.contacts && file.contacts.length ? h('div', {class: 'small'},
      h('h3', {}, 'Contacts'),
      h('ul', {}, file.contacts.map((contact) => h('li', {},
        contact.name,
        contact.role ? ` — ${contact.role}` : '',
        contact.phone ? ` · ${contact.phone}` : '',
        contact.email ? ` · ${contact.email}` : '')))) : null,
    records('Open service records', file.open_records),
    records('Latest service records', (file.recent_records || []).filter(
      (item) => !(file.open_records || []).some((open) => open.id === item.id)).slice(0, 5)));
}

function newCustomerForm(pop) {
  const guess = pop.new_customer || {number: pop.caller?.number || '', name: pop.caller?.name || ''};
  const name = h('input', {id: 'new-customer-name', value: guess.name || '', maxlength: 1024, required: true});
  const number = h('input', {id: 'new-customer-number', value: guess.number || '', maxlength: 64});
  const kind = h('select', {id: 'new-customer-kind'}, ['mobile', 'landline', 'fax', 'other'].map((k) => option(k)));
  const company = h('input', {id: 'new-customer-company', maxlength: 500});
  const tier = h('select', {id: 'new-customer-tier'}, ['standard', 'silver', 'gold', 'vip'].map((t) => option(t)));
  const address = h('input', {id: 'new-customer-address', maxlength: 1000});
  const notes = h('textarea', {id: 'new-customer-notes', maxlength: 20000});
  const form = h('form', {id: 'new-customer-form', class: 'customer-card'},
    h('p', {class: 'note'}, 'Unknown caller: open a customer file.'),
    h('label', {class: 'block'}, h('span', {}, 'Name'), name),
    h('div', {class: 'row'}, h('label', {class: 'block grow'}, h('span', {}, 'Phone'), number), h('label', {class: 'block'}, h('span', {}, 'Kind'), kind)),
    h('div', {class: 'row'}, h('label', {class: 'block grow'}, h('span', {}, 'Company'), company), h('label', {class: 'block'}, h('span', {}, 'Tier'), tier)),
    h('label', {class: 'block'}, h('span', {}, 'Address'), address),
    h('label', {class: 'block'}, h('span', {}, 'Notes'), notes),
    h('button', {type: 'submit'}, 'Create customer'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = {name: name.value, tier: tier.value, phones: []};
    if (number.value.trim()) body.phones.push({number: number.value.trim(), kind: kind.value});
    if (company.value.trim()) body.company = company.value;
    if (address.value.trim()) body.address = address.value;
    if (notes.value.trim()) body.notes = notes.value;
    try {
      const created = await api('/api/v1/customers', {method: 'POST', body});
      notify(`Customer file #${created.customer.id} opened.`, 'ok');
      showPop({...pop, customers: [created], unknown_caller: false, new_customer: null});
    } catch (error) {
      reportError(error);
    }
  });
  return form;
}

function ivrSummary(ivr) {
  if (!ivr || (!ivr.choice && !(ivr.path || []).length)) return null;
  return h('div', {class: 'small'},
    h('h3', {}, 'In the voice menu'),
    h('div', {}, 'Choice: ', h('strong', {class: 'ivr-choice'}, ivr.choice ? label(ivr.choice) : '—'),
      ivr.flow ? ` · flow ${ivr.flow}` : '', ivr.language ? ` · ${ivr.language}` : ''),
    (ivr.path || []).length ? h('div', {class: 'ivr-path'}, ivr.path.map((step) => h('span', {},
      step.node || step.step || '?', step.digits ? ` [${step.digits}]` : ''))) : null);
}

function history(items) {
  return h('div', {},
    h('h3', {}, 'Earlier calls'),
    items && items.length ? h('table', {class: 'small'},
      h('thead', {}, h('tr', {}, h('th', {}, 'When'), h('th', {}, 'From'), h('th', {}, 'Outcome'), h('th', {}, 'Choice'), h('th', {}, 'Agent'), h('th', {}, 'Talk'), h('th', {}, 'Notes'))),
      h('tbody', {}, items.map((item) => h('tr', {},
        h('td', {}, when(item.started_at)),
        h('td', {class: 'mono'}, item.caller_number || ''),
        h('td', {}, label(item.outcome)),
        h('td', {}, item.choice ? label(item.choice) : ''),
        h('td', {}, item.expert ? `${item.agent || ''} → ${item.expert}` : item.agent || ''),
        h('td', {}, item.talk_time === null || item.talk_time === undefined ? '' : duration(item.talk_time)),
        h('td', {class: 'pre'}, item.notes || '')))))
      : h('p', {class: 'empty'}, 'No earlier calls from this number.'));
}

function showPop(pop) {
  const caller = pop.caller || {};
  const body = byId('pop-body');
  const poppedAt = Date.now();
  fill(body,
    h('div', {class: 'caller-line'},
      h('span', {class: 'caller-name', id: 'pop-caller-name'}, caller.name || 'Unknown name'),
      h('span', {class: 'caller-number', id: 'pop-caller-number'}, caller.number || 'no number'),
      pop.expert_call ? h('span', {class: 'badge info'}, 'expert call') : null,
      pop.queue ? h('span', {class: 'small muted'}, `queue ${pop.queue}`) : null,
      caller.did ? h('span', {class: 'small muted'}, `dialled ${caller.did}`) : null,
      pop.waited !== null && pop.waited !== undefined ? h('span', {class: 'small muted'}, `waited ${duration(pop.waited)}`) : null),
    pop.handoff ? h('div', {class: 'handoff-notes', id: 'handoff-notes'},
      h('strong', {}, `Notes from ${pop.handoff.from_user || 'the first agent'}`),
      pop.handoff.requested_at ? h('span', {class: 'small muted'}, ` · ${when(pop.handoff.requested_at)}`) : null,
      h('div', {class: 'pre'}, pop.handoff.notes || '')) : null,
    pop.crm_unavailable ? h('p', {class: 'note'}, 'The CRM did not answer; the file could not be looked up.') : null,
    ivrSummary(pop.ivr),
    h('div', {id: 'pop-customers'},
      (pop.customers || []).length ? pop.customers.map(customerCard)
        : pop.crm_unavailable ? null : newCustomerForm(pop)),
    history(pop.history));
  body.dataset.linkedid = pop.linkedid || '';
  body.dataset.poppedAt = String(poppedAt);
  setCall({linkedid: pop.linkedid, caller, customers: pop.customers || []});
}

// -- the current call ---------------------------------------------------------------------------------------------

function setCall(call) {
  const changed = !state.call || state.call.linkedid !== call.linkedid;
  state.call = {...(changed ? {} : state.call), ...call};
  const caller = state.call.caller;
  fill(byId('call-info'),
    h('span', {class: 'mono'}, state.call.linkedid),
    caller ? ` · ${caller.name || ''} ${caller.number || ''}` : '');
  byId('call-info').className = '';
  fill(byId('record-call'), `For call ${state.call.linkedid}`);
  const customers = state.call.customers || [];
  fill(byId('record-customer'),
    option('', 'no customer file'),
    customers.map((file, index) => option(String(file.customer.id), `${file.customer.name} (#${file.customer.id})`, index === 0)));
  if (changed) {
    newKey();
    byId('callback-number').value = caller?.number || '';
    byId('recording-state').textContent = '';
  }
  updateCallButtons();
}

function updateCallButtons() {
  const onCall = Boolean(state.call && state.call.linkedid);
  for (const button of byId('recording-buttons').querySelectorAll('button')) {
    button.disabled = !state.recordingControl || !onCall;
    button.title = state.recordingControl ? '' : 'Recording control is not available on this server yet';
  }
  byId('expert-button').disabled = !onCall;
}

async function recordingAction(action) {
  if (!state.call) return;
  try {
    const result = await api(`/api/v1/calls/${encodeURIComponent(state.call.linkedid)}/recording`, {
      method: 'POST', body: {action},
    });
    const rows = result.recordings || [];
    const done = {start: 'started', stop: 'stopped', pause: 'paused', resume: 'resumed'}[action];
    byId('recording-state').textContent = `Recording ${done}` + (rows.length ? ` (${rows.map((row) => row.id).join(', ')})` : '');
  } catch (error) {
    reportError(error);
  }
}

function wireCall() {
  for (const button of byId('recording-buttons').querySelectorAll('button')) {
    button.addEventListener('click', () => recordingAction(button.dataset.action));
  }
  const expertForm = byId('expert-form');
  if (!state.can('calls.transfer_expert')) expertForm.classList.add('hidden');
  expertForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const notes = byId('expert-notes').value.trim();
    if (!state.call || !notes) {
      notify('Write a note for the expert first.', 'error');
      return;
    }
    try {
      await api(`/api/v1/calls/${encodeURIComponent(state.call.linkedid)}/transfer-to-expert`, {
        method: 'POST', body: {notes},
      });
      byId('expert-notes').value = '';
      notify('The caller is on the way to an expert, with your notes.', 'ok');
    } catch (error) {
      reportError(error);
    }
  });

  byId('record-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = {
      type: byId('record-type').value,
      content: byId('record-content').value,
      idempotency_key: state.idempotencyKey,
    };
    if (state.call) {
      body.linkedid = state.call.linkedid;
      if (state.call.caller?.number) body.caller_number = state.call.caller.number;
      if (state.call.caller?.name) body.caller_name = state.call.caller.name;
    }
    const customer = byId('record-customer').value;
    if (customer) body.customer_id = Number(customer);
    const outcome = byId('record-outcome').value;
    if (outcome.trim()) body.outcome = outcome;
    if (byId('record-follow-up').value) body.follow_up = byId('record-follow-up').value;
    const appointment = localToIso(byId('record-appointment').value);
    if (appointment) body.appointment_at = appointment;
    try {
      const saved = await api('/api/v1/service-records', {method: 'POST', body});
      if (saved.queued) {
        notify('The CRM is away: the record is kept and will be written once it is back.', 'info');
      } else {
        state.lastRecordId = saved.id;
        notify(`Service record #${saved.id} saved.`, 'ok');
      }
      for (const id of ['record-content', 'record-outcome', 'record-follow-up', 'record-appointment']) byId(id).value = '';
      newKey();
    } catch (error) {
      reportError(error);
    }
  });

  byId('callback-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = {number: byId('callback-number').value.trim()};
    const customer = byId('record-customer').value;
    if (customer) body.customer_id = Number(customer);
    if (state.lastRecordId) body.service_record_id = state.lastRecordId;
    try {
      await api('/api/v1/callbacks', {method: 'POST', body});
      notify(`Calling back ${body.number}: your phone rings first.`, 'ok');
    } catch (error) {
      reportError(error);
    }
  });
  if (!state.can('service_records.write')) {
    byId('record').classList.add('hidden');
    byId('callback-form').classList.add('hidden');
  }
}

// -- knowledge base -----------------------------------------------------------------------------------------------

function wireKb() {
  if (!state.can('knowledge.read')) {
    byId('kb').classList.add('hidden');
    return;
  }
  byId('kb-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const q = byId('kb-query').value.trim();
    if (!q) return;
    try {
      const found = await api('/api/v1/kb', {query: {q, limit: 10}});
      fill(byId('kb-results'), found.items.length ? found.items.map((article) => h('div', {class: 'kb-item'},
        h('strong', {}, article.title),
        (article.tags || []).length ? h('div', {class: 'small muted'}, article.tags.join(' · ')) : null,
        h('div', {class: 'body pre small'}, article.body)))
        : h('p', {class: 'empty'}, 'Nothing found.'));
    } catch (error) {
      reportError(error);
    }
  });
}

// -- frames -------------------------------------------------------------------------------------------------------

function onFrame(frame) {
  if (frame.type === 'screen_pop') {
    showPop(frame);
  } else if (frame.type === 'agent_state') {
    state.stateFrames += 1;
    showSeatState(frame.state, frame.since, frame.reason);
    state.seat = {...(state.seat || {}), state: frame.state, state_since: frame.since, pause_reason: frame.reason,
      paused: frame.state === 'paused'};
  }
}

async function start() {
  const page = await startPage(pageOf('/agent'));
  if (!page) return;
  state.me = page.me;
  state.can = page.can;
  const [options, documentation] = await Promise.all([
    api('/api/v1/agents/pause-reasons').catch(() => state.options),
    apiDocument(),
  ]);
  state.options = options;
  state.recordingControl = Boolean(documentation.paths?.[RECORDING_ROUTE]?.post) && state.can('recordings.control');
  const types = schemaEnum(documentation, 'CrmRecordType');
  fill(byId('record-type'), (types.length ? types : RECORD_TYPES_FALLBACK).map((type) => option(type, label(type))));
  wireSeat();
  wireCall();
  wireKb();
  updateCallButtons();
  newKey();
  await loadSeat();
  liveSocket(onFrame, {onOpen: loadSeat});
}

start().catch(reportError);

