"use strict";
(function () {
  var $ = function (id) { return document.getElementById(id); };

  function b64u(buf) {
    var bytes = new Uint8Array(buf), s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function unb64u(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var raw = atob(s), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }
  function showAlert(form, text) {
    var el = document.querySelector("[role=alert]");
    if (!el) {
      el = document.createElement("div");
      el.className = "alert";
      el.setAttribute("role", "alert");
      form.parentNode.insertBefore(el, form);
    }
    el.textContent = text;
  }
  async function json(resp) {
    var body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) throw new Error((body && body.message) || "The server refused the request.");
    return body;
  }
  function failure(e) {
    if (e && e.name === "NotAllowedError") return "The passkey prompt was cancelled or timed out.";
    if (e && e.name === "InvalidStateError") return "This authenticator is already registered.";
    return (e && e.message) || "Something went wrong.";
  }
  var passkeys = !!(window.PublicKeyCredential && navigator.credentials);

  // A signed assertion, as webauthn-rs's PublicKeyCredential JSON.
  async function assertion(options) {
    var pk = options.publicKey;
    pk.challenge = unb64u(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = unb64u(c.id); });
    var cred = await navigator.credentials.get({ publicKey: pk });
    var r = cred.response;
    return JSON.stringify({
      id: cred.id, rawId: b64u(cred.rawId), type: cred.type,
      response: {
        authenticatorData: b64u(r.authenticatorData), clientDataJSON: b64u(r.clientDataJSON),
        signature: b64u(r.signature), userHandle: r.userHandle ? b64u(r.userHandle) : null
      },
      extensions: {}
    });
  }
  function busy(button, on) { if (button) button.disabled = on; }

  // Time left, counted down in place.
  var timer = $("time-left");
  if (timer) {
    var left = parseInt(timer.dataset.seconds, 10) || 0;
    var tick = function () {
      if (left <= 0) {
        timer.textContent = "Expired";
        document.querySelectorAll("form button").forEach(function (b) { b.disabled = true; });
        return;
      }
      timer.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      left -= 1;
      setTimeout(tick, 1000);
    };
    tick();
  }

  // Step-up: passkey into the same form the code uses.
  var proof = $("proof"), usePasskey = $("use-passkey");
  if (proof && usePasskey && passkeys) {
    usePasskey.hidden = false;
    usePasskey.addEventListener("click", async function () {
      var user = proof.elements.user;
      if (user && user.type !== "hidden" && !user.reportValidity()) return;
      busy(usePasskey, true);
      try {
        var url = proof.dataset.options;
        if (user && user.value.trim()) url += "?user=" + encodeURIComponent(user.value.trim());
        var options = await json(await fetch(url, { headers: { accept: "application/json" } }));
        proof.elements.credential.value = await assertion(options);
        proof.elements.method.value = "webauthn";
        proof.submit();
      } catch (e) {
        showAlert(proof, failure(e));
        busy(usePasskey, false);
      }
    });
  }

  // Step-up: live approval status; collects the release once satisfied.
  var status = $("approval-status"), collect = $("collect");
  if (status && collect) {
    var need = parseInt(status.dataset.required, 10) || 0, done = false;
    var poll = async function () {
      if (done) return;
      try {
        var resp = await fetch(status.dataset.status, { headers: { accept: "application/json" } });
        var s = await resp.json();
        var have = (s.met || []).filter(function (m) { return m.indexOf("approval:") === 0; }).length;
        if (s.state === "denied") { done = true; status.textContent = "Denied. The request will not be carried out."; return; }
        if (s.state === "expired") { done = true; status.textContent = "This request has expired."; return; }
        if (s.state === "released") { done = true; return; }
        status.textContent = have === 0
          ? "Waiting for approval by " + need + (need === 1 ? " person" : " people")
          : "Approved by " + have + " of " + need;
        if (s.state === "satisfied") {
          done = true;
          status.textContent = "Approved by " + have + " of " + need + ". Continuing…";
          collect.submit();
          return;
        }
      } catch (e) { /* try again on the next tick */ }
      setTimeout(poll, 2000);
    };
    setTimeout(poll, 1500);
  }

  // Approver sign-in with a passkey.
  var signin = $("signin"), signinPasskey = $("signin-passkey");
  if (signin && signinPasskey && passkeys) {
    signinPasskey.hidden = false;
    signinPasskey.addEventListener("click", async function () {
      var name = signin.elements.name;
      if (!name.reportValidity()) return;
      busy(signinPasskey, true);
      try {
        var options = await json(await fetch(signin.dataset.options, {
          method: "POST", headers: { "content-type": "application/json", accept: "application/json" },
          body: JSON.stringify({ name: name.value.trim() })
        }));
        signin.elements.credential.value = await assertion(options);
        signin.elements.method.value = "webauthn";
        signin.submit();
      } catch (e) {
        showAlert(signin, failure(e));
        busy(signinPasskey, false);
      }
    });
  }

  // Approver decision with a passkey (approve, or deny without a code).
  var decide = $("decide"), approvePasskey = $("approve-passkey");
  if (decide && approvePasskey && passkeys) {
    approvePasskey.hidden = false;
    var withPasskey = async function (action, button) {
      busy(button, true);
      try {
        var options = await json(await fetch(decide.dataset.options, { headers: { accept: "application/json" } }));
        decide.elements.webauthn.value = await assertion(options);
        decide.action = action;
        decide.submit();
      } catch (e) {
        showAlert(decide, failure(e));
        busy(button, false);
      }
    };
    approvePasskey.addEventListener("click", function () { withPasskey(decide.getAttribute("action"), approvePasskey); });
    var deny = $("deny");
    if (deny) {
      deny.addEventListener("click", function (ev) {
        var code = decide.elements.code;
        if (!code || !code.value) { ev.preventDefault(); withPasskey(decide.dataset.deny, deny); }
      });
    }
  }

  // Passkey enrollment.
  var enroll = $("enroll");
  if (enroll) {
    var out = $("enroll-status");
    if (!passkeys) out.textContent = "This browser cannot create passkeys.";
    enroll.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      var button = enroll.querySelector("button");
      busy(button, true);
      out.className = "status";
      out.textContent = "Follow your browser's prompt…";
      try {
        var token = enroll.dataset.token;
        var post = function (url, body) {
          return fetch(url, {
            method: "POST", headers: { "content-type": "application/json", accept: "application/json" },
            body: JSON.stringify(body)
          });
        };
        var options = await json(await post(enroll.dataset.options, { token: token }));
        var pk = options.publicKey;
        pk.challenge = unb64u(pk.challenge);
        pk.user.id = unb64u(pk.user.id);
        (pk.excludeCredentials || []).forEach(function (c) { c.id = unb64u(c.id); });
        var cred = await navigator.credentials.create({ publicKey: pk });
        var r = cred.response;
        var credential = {
          id: cred.id, rawId: b64u(cred.rawId), type: cred.type,
          response: { attestationObject: b64u(r.attestationObject), clientDataJSON: b64u(r.clientDataJSON) },
          extensions: {}
        };
        if (r.getTransports) credential.response.transports = r.getTransports();
        var done = await json(await post(enroll.dataset.finish, {
          token: token, credential: credential, label: enroll.elements.label.value.trim()
        }));
        enroll.hidden = true;
        out.className = "status ok";
        out.textContent = "Passkey registered for " + (done.user || "you") + ". You can close this page.";
      } catch (e) {
        out.className = "status";
        out.textContent = "";
        showAlert(enroll, failure(e));
        busy(button, false);
      }
    });
  }

  // Approver queue: reload when the set of waiting holds changes.
  var queue = $("queue");
  if (queue) {
    var known = queue.dataset.ids;
    var refresh = async function () {
      try {
        var resp = await fetch(queue.dataset.queue, { headers: { accept: "application/json" } });
        if (resp.ok) {
          var q = await resp.json();
          var ids = (q.holds || []).map(function (h) { return h.hold_id; }).join(" ");
          if (ids !== known) { location.reload(); return; }
        }
      } catch (e) { /* next tick */ }
      setTimeout(refresh, 4000);
    };
    setTimeout(refresh, 4000);
  }
})();
