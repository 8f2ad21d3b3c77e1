#include "runtime/metrics/status_page.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace tandem::metrics {
namespace {

using nlohmann::json;

std::string code_name(int code, std::string (*error_name)(int)) {
  std::string name = error_name ? error_name(code) : "";
  return name.empty() ? std::to_string(code) : name;
}

// The live counters, in the order the page shows them: [name, value, what it counts].
json counters(const ServerMetrics& m) {
  uint64_t errors = 0;
  for (const auto& c : m.errors) errors += c.value();
  auto row = [](const char* name, auto value, const char* help) { return json::array({name, value, help}); };
  return json::array({
      row("connections_open", m.connections_open.value(), "WebSocket connections open"),
      row("connections_total", m.connections_total.value(), "connections since start"),
      row("sessions_awaiting_hello", m.sessions[static_cast<int>(SessionPhase::kAwaitingHello)].value(),
          "connected, no hello yet"),
      row("sessions_joining", m.sessions[static_cast<int>(SessionPhase::kJoining)].value(),
          "authenticated, waiting for the channel"),
      row("sessions_joined", m.sessions[static_cast<int>(SessionPhase::kJoined)].value(), "syncing"),
      row("channels_open", m.channels_open.value(), "user files open"),
      row("pushes", m.pushes.value(), "pushes received"),
      row("acks", m.acks.value(), "acks sent"),
      row("forwards", m.forwards.value(), "forwards sent"),
      row("changes_merged", m.changes_merged.value(), "changes merged and committed"),
      row("group_commits", m.group_commits.value(), "durable commits"),
      row("bytes_received", m.bytes_received.value(), "bytes received from clients"),
      row("bytes_sent", m.bytes_sent.value(), "bytes sent to clients"),
      row("errors", errors, "errors sent to clients"),
  });
}

json channel_json(const cluster::ChannelStatus& c, int64_t now_ms) {
  json devices = json::array();
  std::vector<const cluster::SessionStatus*> sessions;
  for (const auto& s : c.sessions()) sessions.push_back(&s);
  std::sort(sessions.begin(), sessions.end(), [](auto* a, auto* b) {
    return a->site_id() != b->site_id() ? a->site_id() < b->site_id() : a->session() < b->session();
  });
  for (const auto* s : sessions)
    devices.push_back({
        {"session", s->session()},
        {"site", s->site_id()},
        {"client", s->client_name()},
        {"cursor", s->acked_db_version()},
        {"sent", s->sent_db_version()},
        {"lag", std::max<int64_t>(0, c.db_version() - s->acked_db_version())},
        {"pushes", s->pushes()},
        {"replica", s->replica()},
        {"joined_ms", s->joined_unix_ms()},
        {"last_seen_ms", s->last_seen_unix_ms()},
        {"last_seen_ago_ms", std::max<int64_t>(0, now_ms - s->last_seen_unix_ms())},
    });
  // A channel with a client connected serves it; one with only other hosts' links holds a
  // replica. Replica lag: how far the furthest linked host is behind this copy.
  bool serves = false;
  int64_t replica_links = 0, replica_lag = 0;
  for (const auto* s : sessions) {
    if (!s->replica()) {
      serves = true;
      continue;
    }
    ++replica_links;
    replica_lag = std::max<int64_t>(replica_lag, c.db_version() - s->acked_db_version());
  }
  return {{"user", c.user()},         {"db_version", c.db_version()},     {"role", serves ? "serves" : "replica"},
          {"replica_links", replica_links}, {"replica_lag", replica_lag}, {"devices", std::move(devices)}};
}

}  // namespace

std::string render_status_json(const StatusInputs& in, std::string (*error_name)(int code)) {
  json out;
  out["now_ms"] = in.now_ms;
  out["uptime_s"] = std::max<int64_t>(0, (in.now_ms - in.started_ms) / 1000);
  out["counters"] = counters(*in.metrics);
  json directory = {{"ok", in.directory != nullptr}, {"error", in.directory_error}};
  json members = json::array(), channels = json::array(), unanswered = json::array();
  if (in.directory) {
    const auto& d = *in.directory;
    directory["open_channels"] = d.open_channels();
    directory["max_open_channels"] = d.max_open_channels();
    directory["channels_opened"] = d.channels_opened();
    directory["channels_closed"] = d.channels_closed();
    for (const auto& m : d.members())
      members.push_back({{"endpoint", m.endpoint()},
                         {"self", m.self()},
                         {"connected", m.connected()},
                         {"connecting", m.connecting()},
                         {"last_error", m.last_error()}});
    std::vector<const cluster::ChannelStatus*> sorted;
    for (const auto& c : d.channels()) sorted.push_back(&c);
    std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->user() < b->user(); });
    for (const auto* c : sorted) channels.push_back(channel_json(*c, in.now_ms));
    std::vector<std::string> late(d.unanswered().begin(), d.unanswered().end());
    std::sort(late.begin(), late.end());
    for (auto& u : late) unanswered.push_back(u);
  }
  out["directory"] = std::move(directory);
  out["members"] = std::move(members);
  out["channels"] = std::move(channels);
  out["unanswered"] = std::move(unanswered);
  json errors = json::array();
  for (const auto& e : in.errors)
    errors.push_back({{"time_ms", e.unix_ms},
                      {"code", code_name(e.code, error_name)},
                      {"user", e.user},
                      {"client", e.client},
                      {"message", e.message}});
  out["recent_errors"] = std::move(errors);
  out["errors_total"] = in.errors_total;
  // Names and messages come from clients: invalid UTF-8 is replaced, never an exception.
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

const std::string& status_html() {
  static const std::string page = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tandem server status</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.3em; margin-bottom: .2em; }
h2 { font-size: 1.05em; margin: 1.4em 0 .3em; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; font-variant-numeric: tabular-nums; }
thead th { background: #f0f0f0; }
td.n { text-align: right; }
.muted { color: #777; }
.bad { color: #b00; }
</style>
</head>
<body>
<h1>Tandem server status</h1>
<p id="state" class="muted">loading&hellip;</p>
<h2>Counters</h2>
<table id="counters"><thead><tr><th>counter</th><th>value</th><th>per second</th><th></th></tr></thead><tbody></tbody></table>
<h2>Cluster members</h2>
<table id="members"><thead><tr><th>member</th><th>this host</th><th>connected</th></tr></thead><tbody></tbody></table>
<h2>Open channels</h2>
<p id="capacity" class="muted"></p>
<table id="channels"><thead><tr><th>user</th><th>db_version</th><th>devices</th></tr></thead><tbody></tbody></table>
<h2>Connected devices</h2>
<table id="devices"><thead><tr><th>user</th><th>site</th><th>client</th><th>last seen</th><th>cursor</th><th>cursor lag</th><th>pushes</th></tr></thead><tbody></tbody></table>
<h2>Recent errors</h2>
<p id="errors-total" class="muted"></p>
<table id="errors"><thead><tr><th>time (UTC)</th><th>code</th><th>user</th><th>client</th><th>message</th></tr></thead><tbody></tbody></table>
<script>
'use strict';
// Refreshed in place: every second the tables' rows are replaced from /status.json (the
// same query string, so ?token=... carries over). Text goes in through textContent only.
let refreshes = 0;
let previous = null;
const $ = (id) => document.getElementById(id);
function utc(ms) { return new Date(ms).toISOString().replace('T', ' ').slice(0, 19); }
function ago(ms) { return ms < 1000 ? 'just now' : (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + ' s ago'; }
function row(cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    const td = document.createElement('td');
    if (typeof c === 'object' && c !== null) {
      td.textContent = String(c.text);
      if (c.id) td.id = c.id;
      if (c.cls) td.className = c.cls;
    } else {
      td.textContent = String(c);
      if (typeof c === 'number') td.className = 'n';
    }
    tr.appendChild(td);
  }
  return tr;
}
function fill(id, rows, empty) {
  const body = document.querySelector('#' + id + ' tbody');
  const cols = document.querySelectorAll('#' + id + ' thead th').length;
  const fresh = rows.map(row);
  if (fresh.length === 0) {
    const tr = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = cols;
    td.className = 'muted';
    td.textContent = empty;
    tr.appendChild(td);
    fresh.push(tr);
  }
  body.replaceChildren(...fresh);
}
function render(s) {
  const seconds = previous ? (s.now_ms - previous.now_ms) / 1000 : 0;
  const before = previous ? Object.fromEntries(previous.counters.map((c) => [c[0], c[1]])) : {};
  fill('counters', s.counters.map(([name, value, help]) => [
    name,
    {text: value, id: 'c-' + name, cls: 'n'},
    {text: seconds > 0 && name in before ? ((value - before[name]) / seconds).toFixed(1) : '', id: 'r-' + name, cls: 'n'},
    {text: help, cls: 'muted'},
  ]), '');
  fill('members', s.members.map((m) => [m.endpoint, m.self ? 'yes' : '', m.connected ? 'yes' : m.connecting ? 'connecting' : m.last_error ? 'no: ' + m.last_error : 'not yet (on first use)']),
       'a single host (no --cluster-listen)');
  const d = s.directory;
  $('capacity').textContent = d.ok
      ? d.open_channels + ' of at most ' + d.max_open_channels + ' open; ' + d.channels_opened + ' opened and ' +
        d.channels_closed + ' closed since start' +
        (s.unanswered.length ? '; did not answer in time: ' + s.unanswered.join(', ') : '')
      : 'the directory did not answer: ' + d.error;
  fill('channels', s.channels.map((c) => [c.user, c.db_version, c.devices.length]), 'no channel open');
  const devices = [];
  for (const c of s.channels)
    for (const v of c.devices)
      devices.push([c.user, {text: v.site, cls: 'site'}, v.replica ? 'replica link (another host)' : v.client, ago(v.last_seen_ago_ms), v.cursor, v.lag, v.pushes]);
  fill('devices', devices, 'no device connected');
  $('errors-total').textContent = s.errors_total + ' errors sent to clients since start (the last ' +
      s.recent_errors.length + ' below)';
  fill('errors', s.recent_errors.map((e) => [utc(e.time_ms), e.code, e.user, e.client, e.message]), 'none');
  previous = s;
}
async function refresh() {
  const state = $('state');
  try {
    const r = await fetch('status.json' + location.search, {cache: 'no-store'});
    if (!r.ok) throw new Error('HTTP ' + r.status + ': ' + (await r.text()));
    const s = await r.json();
    render(s);
    refreshes += 1;
    state.className = 'muted';
    state.textContent = 'up ' + s.uptime_s + ' s; updated ' + utc(s.now_ms) + ' UTC; refreshes: ';
    const n = document.createElement('span');
    n.id = 'refreshes';
    n.textContent = String(refreshes);
    state.appendChild(n);
  } catch (e) {
    state.className = 'bad';
    state.textContent = 'status unavailable: ' + e.message;
  }
}
// The next refresh a second after this one ended: a slow answer never piles requests up.
async function loop() {
  await refresh();
  setTimeout(loop, 1000);
}
loop();
</script>
</body>
</html>
)HTML";
  return page;
}

}  // namespace tandem::metrics
