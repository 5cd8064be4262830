// Shared by the search page (app.js) and the Duplicates page (dupes.js): plain JavaScript,
// loaded first as a classic script, so these are globals of both pages.
"use strict";

// GET or POST to this server's API; a non-2xx answer throws an Error carrying the server's
// {"error": {"message"}} and the HTTP status.
async function api(path, options = {}) {
  const resp = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const err = new Error(body && body.error ? body.error.message : `${resp.status} ${resp.statusText}`);
    err.status = resp.status;
    throw err;
  }
  return body;
}

// Put the page's state (URLSearchParams) in the address: a new history entry when `push`,
// else in place; nothing when the address already says it.
function setURL(params, push) {
  const url = params.toString() ? `?${params}` : location.pathname;
  if (url !== location.search && !(url === location.pathname && !location.search)) {
    (push ? history.pushState : history.replaceState).call(history, null, "", url);
  }
}
