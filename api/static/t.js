/*! Rastro first-party tag: docs/tracking.md, "The first-party tag and pixel" */
// Served by GET /t.js?t=TENANT with the tenant's settings in place of RASTRO_CONFIG. ES2017,
// no dependencies. Whole-line comments and indentation are stripped when it is served, so
// keep every comment on a line of its own and no string literal across lines.
(() => {
  "use strict";
  // {t, collector, clickParams, landingParams, consent, maxAge, domains}
  const C = RASTRO_CONFIG;
  const w = window;
  const d = document;
  const nav = navigator;
  if (w.rastro && w.rastro.loaded) return;

  const KEYS = { click: "rastro_click", visitor: "rastro_vid", consent: "rastro_consent" };
  const ID = /^[A-Za-z0-9_-]{1,64}$/;
  const EMAIL = /[^\s@]+@[^\s@]+\.[^\s@]+/;
  const MAX_BATCH_BYTES = 60000;
  const MAX_BATCH_EVENTS = 50;
  const FLUSH_MS = 500;
  const secure = location.protocol === "https:";
  const host = location.hostname.toLowerCase();
  // The longest configured domain the page is on: cookies are shared by its subdomains.
  const cookieDomain = C.domains
    .filter((x) => host === x || host.endsWith("." + x))
    .sort((a, b) => b.length - a.length)[0];
  const now = () => Date.now();
  const warn = (...a) => w.console && console.warn("rastro:", ...a);

  // -- first-party storage: a cookie (readable by the merchant's own server) and localStorage
  // (kept when cookies are capped or cleared)
  const readCookie = (k) => {
    for (const part of d.cookie ? d.cookie.split(";") : []) {
      const i = part.indexOf("=");
      if (part.slice(0, i).trim() === k) {
        try {
          return decodeURIComponent(part.slice(i + 1).trim());
        } catch (e) {
          return "";
        }
      }
    }
    return "";
  };
  const writeCookie = (k, v, maxAge) => {
    const base = `${k}=${encodeURIComponent(v)}; Path=/; Max-Age=${maxAge}; SameSite=Lax`;
    const attrs = secure ? "; Secure" : "";
    if (cookieDomain) {
      d.cookie = `${base}; Domain=${cookieDomain}${attrs}`;
      if (maxAge > 0 && readCookie(k) === v) return;
    }
    // A host-only cookie: no configured domain matched, or the browser refused the domain.
    d.cookie = base + attrs;
  };
  const local = {
    get(k) {
      try {
        const v = JSON.parse(w.localStorage.getItem(k));
        return v && typeof v.id === "string" && typeof v.at === "number" ? v : null;
      } catch (e) {
        return null;
      }
    },
    set(k, v) {
      try {
        w.localStorage.setItem(k, JSON.stringify(v));
      } catch (e) {
        // storage disabled or full: the cookie alone then
      }
    },
    del(k) {
      try {
        w.localStorage.removeItem(k);
      } catch (e) {
        // nothing stored then
      }
    },
  };
  const windowMs = C.maxAge * 1000;
  // An id kept in both places: {id, at}, `at` when it was first seen (it expires a window later).
  const load = (k) => {
    const cookie = readCookie(k);
    const stored = local.get(k);
    const fresh = stored && ID.test(stored.id) && stored.at > now() - windowMs ? stored : null;
    // The cookie is shared by the site's subdomains, localStorage is per origin: when they
    // differ, the cookie was set later (on another subdomain). It wins.
    if (ID.test(cookie)) return fresh && fresh.id === cookie ? fresh : { id: cookie, at: now() };
    return fresh;
  };
  // A cookie that already holds the id keeps its expiry, unless `refresh` (a rolling id).
  const save = (k, v, refresh) => {
    const left = Math.round((v.at + windowMs - now()) / 1000);
    if (left <= 0) return;
    if (refresh || readCookie(k) !== v.id) writeCookie(k, v.id, left);
    local.set(k, v);
  };
  const erase = (k) => {
    d.cookie = `${k}=; Path=/; Max-Age=0`;
    if (cookieDomain) d.cookie = `${k}=; Path=/; Max-Age=0; Domain=${cookieDomain}`;
    local.del(k);
  };

  // -- consent: see docs/tracking.md, "Consent and cookies"
  const choice = () => {
    const v = (load(KEYS.consent) || {}).id;
    return v === "granted" || v === "denied" ? v : "";
  };
  let consent = choice();
  const objects = nav.globalPrivacyControl === true || nav.doNotTrack === "1";
  const mayStore = () =>
    consent === "granted" ||
    (consent === "" && (C.consent === "none" || (C.consent === "opt_out" && !objects)));
  const consentLabel = () =>
    consent || (C.consent === "opt_out" && objects ? "denied" : "unknown");

  // -- the identifiers of this page view
  let click = null;
  let visitor = null;
  // A click id minted on this page for a link code in a landing parameter (?via=CODE): there was
  // no redirect, so the server records the click when the page view says so (landing_click).
  let minted = null;
  let reported = false;
  const newId = () =>
    Array.from(w.crypto.getRandomValues(new Uint8Array(16)), (b) =>
      b.toString(16).padStart(2, "0"),
    ).join("");
  const first = (params, names) => {
    for (const p of names) {
      const v = params.get(p);
      if (v && ID.test(v)) return v;
    }
    return "";
  };
  const sync = () => {
    const params = new URLSearchParams(location.search);
    const seen = first(params, C.clickParams);
    const code = seen ? "" : first(params, C.landingParams);
    const store = mayStore();
    // Nothing is read or written without consent; the click id of the URL still goes with
    // this page's events.
    const kept = store ? load(KEYS.click) : null;
    if (seen) {
      click = kept && kept.id === seen ? kept : { id: seen, at: now() };
    } else if (code) {
      if (!minted || minted.via !== code) minted = { id: newId(), at: now(), via: code };
      click = kept && kept.via === code ? kept : minted;
    } else {
      click = kept;
    }
    visitor = null;
    if (!store) return;
    if (click) save(KEYS.click, click);
    // The visitor id lives a window after the last visit.
    visitor = { id: (load(KEYS.visitor) || { id: newId() }).id, at: now() };
    save(KEYS.visitor, visitor, true);
  };

  // -- events: batched, sent with sendBeacon (text/plain: no CORS preflight), fetch as fallback
  const queue = [];
  let timer = 0;
  const encoder = new TextEncoder();
  const flush = () => {
    clearTimeout(timer);
    timer = 0;
    while (queue.length) {
      const events = [];
      let size = 0;
      while (queue.length && events.length < MAX_BATCH_EVENTS) {
        const n = encoder.encode(JSON.stringify(queue[0])).length + 1;
        if (events.length && size + n > MAX_BATCH_BYTES) break;
        events.push(queue.shift());
        size += n;
      }
      const body = JSON.stringify({ t: C.t, sent_at: now(), events });
      let sent = false;
      try {
        sent = !!nav.sendBeacon && nav.sendBeacon(C.collector, body);
      } catch (e) {
        sent = false;
      }
      if (!sent && w.fetch) {
        fetch(C.collector, {
          method: "POST",
          body,
          keepalive: true,
          credentials: "omit",
          headers: { "Content-Type": "text/plain" },
        }).catch((e) => warn("events not sent", e));
      }
    }
  };
  const push = (event) => {
    queue.push(event);
    if (!timer) timer = setTimeout(flush, FLUSH_MS);
  };
  const event = (kind) => ({
    kind,
    ts: now(),
    url: location.href.slice(0, 2048),
    referrer: d.referrer.slice(0, 2048),
    click_id: click ? click.id : "",
    cookie_id: visitor ? visitor.id : "",
    consent: consentLabel(),
    properties: {},
  });
  // Flat properties: strings (cut at 256 characters), numbers, booleans; at most 20. Values
  // that look like an email address are dropped: raw emails never leave the page.
  const properties = (props, skip) => {
    const out = {};
    let n = 0;
    for (const k of Object.keys(props || {})) {
      let v = props[k];
      if (skip.includes(k) || n >= 20 || !/^[A-Za-z0-9_.-]{1,64}$/.test(k)) continue;
      if (typeof v === "string") v = v.slice(0, 256);
      else if (!(typeof v === "boolean" || (typeof v === "number" && isFinite(v)))) continue;
      if (typeof v === "string" && EMAIL.test(v)) {
        warn(`property ${k} dropped: it looks like an email address`);
        continue;
      }
      out[k] = v;
      n += 1;
    }
    return out;
  };
  // SHA-256 of the trimmed, lower-cased address, in hex. crypto.subtle exists on secure (https)
  // pages only; elsewhere the email is dropped, never sent in clear.
  const hashEmail = async (email) => {
    if (typeof email !== "string" || !email.trim()) return "";
    if (!(w.crypto && w.crypto.subtle)) {
      warn("email not sent: hashing it needs a secure (https) page");
      return "";
    }
    const digest = await w.crypto.subtle.digest(
      "SHA-256",
      encoder.encode(email.trim().toLowerCase()),
    );
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  };
  const identity = async (kind, p) => {
    const e = event(kind);
    const data = p || {};
    const customer = data.customer_id == null ? "" : String(data.customer_id).slice(0, 128);
    if (customer) e.customer_id = customer;
    e.properties = properties(data, ["customer_id", "email"]);
    const hash = await hashEmail(data.email);
    if (hash) e.email_sha256 = hash;
    if (kind === "identify" && !customer && !hash) {
      warn("identify needs a customer_id or an email");
      return;
    }
    push(e);
  };
  const pageView = (p) => {
    sync();
    const e = event("page_view");
    const params = new URLSearchParams(location.search);
    const landing = {};
    for (const k of C.landingParams) {
      const v = params.get(k);
      if (v) landing[k] = v;
    }
    e.properties = properties(Object.assign(landing, p), []);
    if (click && click === minted && !reported) {
      e.landing_click = true;
      reported = true;
    }
    push(e);
  };

  // -- the public API: window.rastro(command, ...arguments)
  const commands = {
    consent(v) {
      if (v !== "granted" && v !== "denied") return warn("consent is 'granted' or 'denied'");
      consent = v;
      if (v === "denied") Object.values(KEYS).forEach(erase);
      // The choice itself is kept (it identifies no one) so that later pages honour it.
      save(KEYS.consent, { id: v, at: now() }, true);
      sync();
    },
    page_view: pageView,
    identify: (p) => identity("identify", p),
    lead: (p) => identity("lead", p),
    flush,
  };
  const rastro = function (name, ...args) {
    const command = commands[name];
    if (!command) return warn("unknown command", name);
    // identify and lead answer a promise, settled once the event is queued (after hashing):
    // `await rastro('lead', ...)` before leaving the page.
    try {
      const result = command(...args);
      return result && result.catch ? result.catch((e) => warn(e)) : result;
    } catch (e) {
      warn(e);
    }
  };
  rastro.loaded = true;
  // The merchant's own code may need them (a server-side conversion carries the click id).
  rastro.ids = () => ({ click_id: click ? click.id : "", cookie_id: visitor ? visitor.id : "" });

  // Calls made before this script loaded (the snippet's queue): consent first, so that the page
  // view is stored or not under the merchant's choice; then the page view; then the rest.
  const pending = Array.from((w.rastro && w.rastro.q) || [], (a) => Array.from(a));
  w.rastro = rastro;
  pending.filter((a) => a[0] === "consent").forEach((a) => rastro(...a));
  pageView();
  pending.filter((a) => a[0] !== "consent").forEach((a) => rastro(...a));
  d.addEventListener("visibilitychange", () => d.visibilityState === "hidden" && flush());
  w.addEventListener("pagehide", flush);
})();
