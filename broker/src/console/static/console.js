// Countersign approver console: the little the pages need a script for.
// Passkey ceremonies (via @simplewebauthn/browser, served as /static/webauthn.js),
// the expiry countdown, and the sign-in link token (read from the URL fragment,
// which never reaches any server until the person presses Sign in).
'use strict';

(function () {
  var webauthn = window.SimpleWebAuthnBrowser;
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute('content') : '';

  function postJson(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify(body),
    }).then(function (res) {
      return res.json().then(function (json) {
        if (!res.ok) {
          var error = new Error((json.error && json.error.message) || 'request failed (' + res.status + ')');
          error.code = json.error && json.error.code;
          throw error;
        }
        return json;
      });
    });
  }

  function showError(box, error) {
    if (!box) return;
    var text =
      error && error.name === 'NotAllowedError'
        ? 'The passkey prompt was cancelled or timed out; nothing was recorded.'
        : (error && error.message) || String(error);
    box.textContent = text + (error && error.code ? ' [' + error.code + ']' : '');
    box.hidden = false;
  }

  // ---- countdown ----
  function tick() {
    var now = Date.now();
    document.querySelectorAll('time[data-countdown]').forEach(function (el) {
      var left = Math.floor((Date.parse(el.getAttribute('datetime')) - now) / 1000);
      if (left <= 0) {
        el.textContent = 'now (expired)';
        el.classList.add('cs-expired');
        return;
      }
      var h = Math.floor(left / 3600);
      var m = Math.floor((left % 3600) / 60);
      var s = left % 60;
      el.textContent = 'in ' + (h > 0 ? h + ' h ' + m + ' min' : m > 0 ? m + ' min ' + s + ' s' : s + ' s');
      el.classList.toggle('cs-soon', left < 120);
    });
  }
  if (document.querySelector('time[data-countdown]')) {
    tick();
    setInterval(tick, 1000);
  }

  // ---- sign-in link ----
  var linkToken = document.getElementById('cs-link-token');
  function readLinkToken() {
    var match = /[#&]t=([A-Za-z0-9_-]+)/.exec(window.location.hash);
    if (match) linkToken.value = match[1];
    // The token is in the form now; keep it out of the address bar and history.
    if (window.location.hash) history.replaceState(null, '', window.location.pathname);
  }
  if (linkToken) {
    readLinkToken();
    // Another link opened in this same tab changes only the fragment: no new page load.
    window.addEventListener('hashchange', readLinkToken);
  }

  // ---- approve with a passkey ----
  var voteForm = document.querySelector('form.cs-vote[data-passkey="assert"]');
  if (voteForm) {
    voteForm.addEventListener('submit', function (event) {
      var submitter = event.submitter;
      if (!submitter || submitter.value !== 'approve') return; // Deny is a plain form post.
      event.preventDefault();
      var box = voteForm.querySelector('[data-vote-error]');
      box.hidden = true;
      var requestId = voteForm.getAttribute('data-request');
      var reason = voteForm.querySelector('[name="reason"]').value;
      var buttons = voteForm.querySelectorAll('button');
      buttons.forEach(function (b) {
        b.disabled = true;
      });
      postJson('/requests/' + requestId + '/challenge', { decision: 'approve' })
        .then(function (challenge) {
          return webauthn.startAuthentication({ optionsJSON: challenge.options }).then(function (response) {
            return postJson('/requests/' + requestId + '/vote', {
              decision: 'approve',
              reason: reason,
              passkey: { challengeId: challenge.challengeId, response: response },
            });
          });
        })
        .then(function (result) {
          window.location.assign(result.redirect);
        })
        .catch(function (error) {
          showError(box, error);
          buttons.forEach(function (b) {
            b.disabled = false;
          });
        });
    });
  }

  // ---- register a passkey ----
  var registerForm = document.querySelector('form[data-register]');
  if (registerForm) {
    registerForm.addEventListener('submit', function (event) {
      event.preventDefault();
      var box = registerForm.querySelector('[data-register-error]');
      box.hidden = true;
      var name = registerForm.querySelector('[name="name"]').value;
      postJson('/passkeys/options', {})
        .then(function (challenge) {
          return webauthn.startRegistration({ optionsJSON: challenge.options }).then(function (response) {
            return postJson('/passkeys', { challengeId: challenge.challengeId, response: response, name: name });
          });
        })
        .then(function (result) {
          window.location.assign(result.redirect);
        })
        .catch(function (error) {
          showError(box, error);
        });
    });
  }

  // ---- confirm with a passkey (rules with step_up_max_age) ----
  var confirmButton = document.querySelector('[data-passkey-sign-in]');
  if (confirmButton) {
    confirmButton.addEventListener('click', function () {
      var box = document.querySelector('[data-sign-in-error]');
      box.hidden = true;
      postJson('/sign-in/passkey/options', {})
        .then(function (challenge) {
          return webauthn.startAuthentication({ optionsJSON: challenge.options }).then(function (response) {
            return postJson('/sign-in/passkey', { challengeId: challenge.challengeId, response: response });
          });
        })
        .then(function (result) {
          window.location.assign(result.redirect);
        })
        .catch(function (error) {
          showError(box, error);
        });
    });
  }
})();
