// Sign in with a password or a token: the server answers with a session cookie.
function next() {
  const wanted = new URLSearchParams(location.search).get("next") || "/";
  // only a page of this server: never an open redirect (`//x`, `/\x` and tabs resolve
  // elsewhere, so the URL is resolved and its origin compared)
  try {
    const url = new URL(wanted, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
  } catch (e) {
    return "/";
  }
}

async function signIn(doc) {
  const box = document.getElementById("login-error");
  box.hidden = true;
  const response = await fetch("/ui/login", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(doc),
  });
  if (response.ok) {
    location.assign(next());
    return;
  }
  let message = `sign-in failed (HTTP ${response.status})`;
  try { message = (await response.json()).message || message; } catch (e) { /* keep it */ }
  box.textContent = message;
  box.hidden = false;
}

document.getElementById("password-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn({ user: document.getElementById("user").value, password: document.getElementById("password").value });
});
document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn({ token: document.getElementById("token").value });
});
document.body.dataset.ready = "1";
