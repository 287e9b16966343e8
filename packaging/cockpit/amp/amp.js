/*
 * amp's Cockpit page. Everything it shows comes from `ampctl … --json`, run through
 * cockpit.spawn as the logged-in user: ampctl finds the user's projects in their registry,
 * checks that each varlink socket is theirs (owner, mode) before it talks to ampd, and words
 * every failure with its fix; the page shows those words. One process per call (a few ms);
 * the overview is one call for every project. Plain JavaScript, no build step, no network.
 */
"use strict";

const REFRESH_MS = 5000;
let timer = null;
let pending = false;      // a confirmation or an action is on screen: no refresh under it
let notice = null;        // {kind, text}: the outcome of the last action

/* ampctl, found on PATH or in ~/.local/bin (`make install-user`). */
function ampctl(args) {
    const script = 'exe=$(command -v ampctl || echo "$HOME/.local/bin/ampctl"); exec "$exe" "$@"';
    return cockpit.spawn(["sh", "-c", script, "ampctl"].concat(args), { err: "message", environ: ["NO_COLOR=1", "LC_ALL=C.UTF-8"] });
}
function ampctlJSON(args) { return ampctl(args.concat(["--json"])).then(text => JSON.parse(text)); }
function failure(e) { return (e && (e.message || e.problem)) ? String(e.message || e.problem).trim() : String(e); }

function esc(s) {
    return String(s === undefined || s === null ? "" : s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function bytes(n) {
    if (n === undefined || n === null) return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0, v = Number(n);
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
}
function duration(seconds) {
    if (seconds === undefined || seconds === null) return "–";
    const s = Math.floor(seconds);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}
function stateLabel(state) {
    const colour = { ready: "green", external: "green", starting: "blue", stopping: "blue", failed: "red", unmanaged: "orange", inactive: "grey" }[state] || "grey";
    return `<span class="amp-label amp-label-${colour}" data-state="${esc(state)}">${esc(state === "inactive" ? "stopped" : state)}</span>`;
}
function banner(kind, text) {
    return `<div class="pf-c-alert pf-m-${kind === "error" ? "danger" : kind} pf-m-inline amp-alert" role="alert" data-kind="${esc(kind)}"><p class="pf-c-alert__title">${esc(text)}</p></div>`;
}

/* A line chart of one or more series over the last hour, drawn as SVG. */
function chart(id, title, series, format) {
    const w = 520, h = 150, left = 8, right = 8, top = 10, bottom = 18;
    const all = series.flatMap(s => s.points);
    const count = series.length ? series[0].points.length : 0;
    let body = "";
    if (all.length < 2) {
        body = `<text x="${w / 2}" y="${h / 2}" text-anchor="middle" class="amp-muted">collecting… (a sample every 5 s)</text>`;
    } else {
        const t0 = Math.min(...all.map(p => p[0])), t1 = Math.max(...all.map(p => p[0]));
        const vmax = Math.max(...all.map(p => p[1]), 1e-9), vmin = Math.min(0, ...all.map(p => p[1]));
        const x = t => left + (w - left - right) * (t1 === t0 ? 1 : (t - t0) / (t1 - t0));
        const y = v => top + (h - top - bottom) * (1 - (v - vmin) / (vmax - vmin || 1));
        body += `<line x1="${left}" y1="${h - bottom}" x2="${w - right}" y2="${h - bottom}" class="amp-axis"/>`;
        body += `<text x="${left}" y="${h - 4}" class="amp-tick">${esc(new Date(t0 * 1000).toLocaleTimeString())}</text>`;
        body += `<text x="${w - right}" y="${h - 4}" text-anchor="end" class="amp-tick">${esc(new Date(t1 * 1000).toLocaleTimeString())}</text>`;
        body += `<text x="${w - right}" y="${top + 8}" text-anchor="end" class="amp-tick">max ${esc(format(vmax))}</text>`;
        for (const s of series) {
            const pts = s.points.map(p => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
            body += `<polyline points="${pts}" fill="none" stroke="${s.colour}" stroke-width="1.5"><title>${esc(s.label)}</title></polyline>`;
        }
    }
    const legend = series.map(s => {
        const last = s.points.length ? format(s.points[s.points.length - 1][1]) : "–";
        return `<span class="amp-legend"><span class="amp-swatch" style="background:${s.colour}"></span>${esc(s.label)}: ${esc(last)}</span>`;
    }).join(" ");
    return `<figure class="amp-chart" id="${esc(id)}" data-points="${count}"><figcaption>${esc(title)}</figcaption>
        <svg viewBox="0 0 ${w} ${h}" width="100%" role="img" aria-label="${esc(title)}">${body}</svg><div>${legend}</div></figure>`;
}

/* Per-second rates of a cumulative counter between samples (a restart resets it: skipped). */
function rate(samples, key) {
    const out = [];
    for (let i = 1; i < samples.length; i++) {
        const dt = samples[i].time - samples[i - 1].time, dv = samples[i][key] - samples[i - 1][key];
        if (dt > 0 && dv >= 0) out.push([samples[i].time, dv / dt]);
    }
    return out;
}

/* The share of block reads served from shared buffers between samples (percent), where any
   block was read at all. */
function hitRatio(samples) {
    const out = [];
    for (let i = 1; i < samples.length; i++) {
        const hit = samples[i].blocks_hit - samples[i - 1].blocks_hit, read = samples[i].blocks_read - samples[i - 1].blocks_read;
        if (hit >= 0 && read >= 0 && hit + read > 0) out.push([samples[i].time, 100 * hit / (hit + read)]);
    }
    return out;
}

function table(rows, columns, empty, id) {
    if (!rows || rows.length === 0) return `<p class="amp-muted" id="${esc(id)}" data-rows="0">${esc(empty)}</p>`;
    const head = columns.map(c => `<th>${esc(c[1])}</th>`).join("");
    const body = rows.map(r => "<tr>" + columns.map(c => `<td data-label="${esc(c[1])}">${c[2] ? c[2](r[c[0]], r) : esc(r[c[0]])}</td>`).join("") + "</tr>").join("");
    return `<table class="pf-c-table pf-m-compact pf-m-grid-md amp-table" id="${esc(id)}" data-rows="${rows.length}"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function section(title, html) { return `<section class="amp-section"><h2 class="amp-h2">${esc(title)}</h2>${html}</section>`; }

/* ---- the overview ---- */

function renderOverview(app) {
    return ampctlJSON(["list"]).then(projects => {
        const rows = projects.map(p => Object.assign({ status_: p.status || {} }, p));
        const html = `<h1 class="amp-h1">PostgreSQL projects</h1>
            ${notice ? banner(notice.kind, notice.text) : ""}
            ${table(rows, [
                ["name", "Project", (v) => `<a href="#/${encodeURIComponent(v)}" class="amp-project" data-project="${esc(v)}">${esc(v)}</a>`],
                ["state", "State", (v) => stateLabel(v)],
                ["status_", "Version", (s) => esc(s.version ? s.version.split(" ")[0] : "–")],
                ["status_", "Size", (s) => `<span class="amp-size">${esc(bytes(s.database_size_bytes))}</span>`],
                ["status_", "Connections", (s) => esc(s.connections === undefined ? "–" : s.connections)],
                ["status_", "Up", (s) => esc(duration(s.uptime_seconds))],
                ["status_", "Restarts", (s) => `<span class="amp-restarts">${esc(s.restarts === undefined ? "–" : s.restarts)}</span>`],
                ["path", "Directory", (v) => `<code>${esc(v)}</code>`],
            ], "No projects yet: run `ampctl init` in a project directory.", "amp-projects")}`;
        app.innerHTML = html;
        for (const a of app.querySelectorAll("a.amp-project")) {
            a.addEventListener("click", ev => { ev.preventDefault(); cockpit.location.go([a.dataset.project]); });
        }
    }).catch(e => { app.innerHTML = `<h1 class="amp-h1">PostgreSQL projects</h1>` + banner("error", "ampctl list failed: " + failure(e)); });
}

/* ---- one project ---- */

function journalLine(name) {
    return cockpit.spawn(["journalctl", "--user", "-u", "amp@" + name + ".service", "-n", "1", "-o", "cat", "--no-pager"], { err: "ignore" })
        .then(t => t.trim()).catch(() => "");
}

function renderProject(app, name) {
    return ampctlJSON(["list"]).then(projects => {
        const p = projects.find(x => x.name === name);
        if (!p) { app.innerHTML = banner("error", `No project named ${name}; see the list.`) + `<p><a href="#/">All projects</a></p>`; return; }
        const s = p.status || {};
        const running = ["ready", "starting", "stopping", "external"].includes(p.state);
        const buttons = `<div class="amp-actions">
            <button class="pf-c-button pf-m-primary" id="amp-start" ${running ? "disabled" : ""}>Start</button>
            <button class="pf-c-button pf-m-secondary" id="amp-restart" ${running ? "" : "disabled"}>Restart</button>
            <button class="pf-c-button pf-m-secondary" id="amp-stop" ${running ? "" : "disabled"}>Stop</button>
            <button class="pf-c-button pf-m-secondary" id="amp-snapshot" ${p.state === "ready" ? "" : "disabled"}>Take snapshot</button></div>
            <div id="amp-confirm"></div>`;
        const facts = `<dl class="amp-facts">
            <dt>State</dt><dd>${stateLabel(p.state)} ${esc(s.phase && p.state !== "ready" ? s.phase : "")}</dd>
            <dt>Version</dt><dd>${esc(s.version || "–")}</dd>
            <dt>Size</dt><dd>${esc(bytes(s.database_size_bytes))}</dd>
            <dt>Connections</dt><dd>${esc(s.connections === undefined ? "–" : s.connections)}</dd>
            <dt>Up</dt><dd>${esc(duration(s.uptime_seconds))}</dd>
            <dt>Restarts</dt><dd id="amp-restarts">${esc(s.restarts === undefined ? "–" : s.restarts)}</dd>
            <dt>URL</dt><dd><code>${esc(s.url || p.url || "–")}</code></dd>
            <dt>Directory</dt><dd><code>${esc(p.path)}</code></dd>
            ${s.role ? `<dt>Role</dt><dd>${esc(s.role)}</dd>` : ""}
            ${s.archive ? `<dt>Archive</dt><dd>${esc(s.archive)}${s.restorable_to ? esc(", restorable to " + s.restorable_to) : ""}</dd>` : ""}
            ${s.pool ? `<dt>Pool</dt><dd>PgBouncer ${esc(s.pool.state)}, clients ${esc(s.pool.clients_active)} active / ${esc(s.pool.clients_waiting)} waiting</dd>` : ""}
            </dl>`;
        let head = `<p><a href="#/" id="amp-back">All projects</a></p><h1 class="amp-h1">${esc(name)}</h1>${notice ? banner(notice.kind, notice.text) : ""}${buttons}${facts}`;
        if (!running) {
            const why = p.state === "inactive"
                ? banner("info", `${name} is stopped. Start it here, or with \`ampctl start ${name}\`.`)
                : journalLine(name).then(line => banner("warning", `${name} is ${p.state}: ampd does not answer. ${line ? "Last journal line: " + line : ""}`));
            return Promise.resolve(why).then(b => { app.innerHTML = head + b; wire(app, name); });
        }
        const parts = [
            ampctlJSON(["status", name, "--history"]),
            ampctlJSON(["top", name, "--limit", "10"]),
            ampctlJSON(["slow", name, "--limit", "5"]),
            ampctlJSON(["snapshot", "list", "--project", name]),
            ampctlJSON(["branch", "list", name]),
            ampctlJSON(["du"]),
        ].map(promise => promise.then(v => ({ ok: true, v }), e => ({ ok: false, e: failure(e) })));
        return Promise.all(parts).then(([history, top, slow, snapshots, branches, du]) => {
            let html = head;
            if (history.ok) {
                const h = history.v.history || [];
                html += section("The last hour", `<div class="amp-charts">
                    ${chart("amp-chart-commits", "Transactions per second", [
                        { label: "committed", colour: "#0066cc", points: rate(h, "committed") },
                        { label: "rolled back", colour: "#c9190b", points: rate(h, "rolled_back") }], v => v.toFixed(1))}
                    ${chart("amp-chart-connections", "Connections", [
                        { label: "active", colour: "#3e8635", points: h.map(x => [x.time, x.active_connections]) },
                        { label: "idle", colour: "#8a8d90", points: h.map(x => [x.time, x.idle_connections]) },
                        { label: "idle in transaction", colour: "#f0ab00", points: h.map(x => [x.time, x.idle_in_transaction_connections]) }], v => v.toFixed(0))}
                    ${chart("amp-chart-rows", "Rows per second", [
                        { label: "read", colour: "#0066cc", points: rate(h, "rows_read") },
                        { label: "written", colour: "#5752d1", points: rate(h, "rows_written") }], v => v.toFixed(0))}
                    ${chart("amp-chart-size", "Databases' size", [{ label: "size", colour: "#009596", points: h.filter(x => x.database_bytes > 0).map(x => [x.time, x.database_bytes]) }], bytes)}
                    ${chart("amp-chart-wal", "WAL written per second", [{ label: "WAL", colour: "#6753ac", points: rate(h, "wal_bytes") }], v => bytes(v) + "/s")}
                    ${chart("amp-chart-cache", "Cache hit ratio", [{ label: "from shared buffers", colour: "#3e8635", points: hitRatio(h) }], v => v.toFixed(1) + " %")}
                    ${chart("amp-chart-checkpoints", "Checkpoints per minute", [{ label: "checkpoints", colour: "#c46100",
                        points: rate(h, "checkpoints").map(p => [p[0], p[1] * 60]) }], v => v.toFixed(1))}
                    </div>`);
            } else {
                html += section("The last hour", banner("warning", history.e));
            }
            html += section("Statements that cost the most", top.ok ? table(top.v, [
                ["database", "Database"], ["query", "Statement", v => `<code class="amp-query">${esc(v)}</code>`], ["calls", "Calls"],
                ["total_ms", "Total ms", v => esc(Number(v).toFixed(1))], ["mean_ms", "Mean ms", v => esc(Number(v).toFixed(2))], ["rows", "Rows"]],
                "No statements recorded yet (pg_stat_statements).", "amp-top") : banner("warning", top.e));
            html += section("Recent slow plans", slow.ok ? table(slow.v, [
                ["time", "When"], ["duration_ms", "ms", v => esc(v === null ? "–" : Number(v).toFixed(0))], ["plan", "Plan", v => `<pre class="amp-plan">${esc(v)}</pre>`]],
                "No statement over auto_explain's threshold in the journal.", "amp-slow") : banner("warning", slow.e));
            html += section("Snapshots", snapshots.ok ? table(snapshots.v, [
                ["name", "Name", v => `<span class="amp-snapshot">${esc(v)}</span>`], ["created", "Taken"], ["size_bytes", "Size", v => esc(bytes(v))],
                ["postgres_version", "PostgreSQL"], ["git_commit", "Git commit"]],
                "No snapshots. Take one with the button above (or `ampctl snapshot create`).", "amp-snapshots") : banner("warning", snapshots.e));
            html += section("Branch databases", branches.ok ? table(branches.v, [
                ["branch", "Branch"], ["database", "Database"], ["size_bytes", "Size", v => esc(bytes(v))],
                ["branch_exists", "In git", v => v ? "yes" : "gone (drop: ampctl branch prune)"]],
                "No branch databases (ampctl url --branch makes one per git branch).", "amp-branches") : banner("warning", branches.e));
            if (du.ok) {
                const mine = (du.v.projects || []).filter(x => x.name === name);
                html += section("Disk usage", table(mine, [
                    ["cluster_bytes", "Cluster", v => esc(bytes(v))], ["rollback_bytes", "Rollback copies", v => esc(bytes(v))],
                    ["other_bytes", "Backups and other", v => esc(bytes(v))],
                    ["leftovers", "Leftovers", v => esc((v || []).length ? (v || []).length + " (ampctl gc)" : "none")]], "Not measured.", "amp-du"));
            } else {
                html += section("Disk usage", banner("warning", du.e));
            }
            app.innerHTML = html;
            wire(app, name);
        });
    }).catch(e => { app.innerHTML = banner("error", "ampctl list failed: " + failure(e)); });
}

/* The buttons: start and snapshot at once; stop and restart ask first, as ampctl would
   before interrupting every client. */
function wire(app, name) {
    const back = app.querySelector("#amp-back");
    if (back) back.addEventListener("click", ev => { ev.preventDefault(); notice = null; cockpit.location.go([]); });
    const act = (label, args, done) => {
        pending = true;
        notice = { kind: "info", text: `${label}…` };
        render();
        return ampctl(args).then(out => { notice = { kind: "success", text: done(out) }; })
            .catch(e => { notice = { kind: "error", text: `${label} failed: ${failure(e)}` }; })
            .then(() => { pending = false; render(); });
    };
    const confirmFirst = (question, button, then) => {
        pending = true;
        const box = app.querySelector("#amp-confirm");
        box.innerHTML = `<div class="pf-c-alert pf-m-warning pf-m-inline amp-alert" id="amp-confirm-box"><p class="pf-c-alert__title">${esc(question)}</p>
            <button class="pf-c-button pf-m-danger" id="amp-confirm-yes">${esc(button)}</button>
            <button class="pf-c-button pf-m-link" id="amp-confirm-no">Cancel</button></div>`;
        box.querySelector("#amp-confirm-yes").addEventListener("click", then);
        box.querySelector("#amp-confirm-no").addEventListener("click", () => { box.innerHTML = ""; pending = false; });
    };
    const on = (id, f) => { const b = app.querySelector(id); if (b) b.addEventListener("click", f); };
    on("#amp-start", () => act(`Starting ${name}`, ["start", name], () => `${name} started.`));
    on("#amp-snapshot", () => act(`Taking a snapshot of ${name}`, ["snapshot", "create", "--project", name, "--json"], out => {
        try { return `Snapshot ${JSON.parse(out).name} taken.`; } catch (e) { return "Snapshot taken."; }
    }));
    on("#amp-stop", () => confirmFirst(`Stop ${name}? Its clients are disconnected; the data stays.`, "Stop",
        () => act(`Stopping ${name}`, ["stop", name], () => `${name} stopped.`)));
    on("#amp-restart", () => confirmFirst(`Restart ${name}? Its clients are disconnected for a moment.`, "Restart",
        () => act(`Restarting ${name}`, ["restart", name], () => `${name} restarted.`)));
}

function render() {
    const app = document.getElementById("app");
    const path = cockpit.location.path;
    const done = path.length === 0 ? renderOverview(app) : renderProject(app, decodeURIComponent(path[0]));
    return done.then(() => { document.body.dataset.rendered = String(Date.now()); });
}

function tick() {
    if (!pending) render();
}

document.addEventListener("DOMContentLoaded", () => {
    cockpit.translate();
    // A new page starts without the last page's notice.
    // Nothing of the last page stays clickable while the next one loads.
    cockpit.addEventListener("locationchanged", () => {
        notice = null;
        pending = false;
        document.getElementById("app").innerHTML = '<p class="amp-muted">Loading…</p>';
        render();
    });
    render();
    timer = window.setInterval(tick, REFRESH_MS);
});
