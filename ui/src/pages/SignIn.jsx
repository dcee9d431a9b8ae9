// Sign-in: the API token (or a user's token) is checked against the API and kept in this
// browser tab's sessionStorage only.
import { useState } from 'preact/hooks';
import { session, whoAmI } from '../api.js';

export function SignIn({ error, onSignedIn }) {
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [failed, setFailed] = useState(null);
  const shown = failed || error;

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setFailed(null);
    try {
      const user = await whoAmI(token.trim());
      session.save(token.trim());
      onSignedIn(user);
    } catch (exc) {
      setFailed(exc);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="signin" id="main">
      <form onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">dagkeeper</h1>
        <p>Sign in with an API token: the bootstrap token is in <code>&lt;data_dir&gt;/api-token</code> (or
          <code> DAGKEEPER_API__TOKEN</code>). It stays in this tab only.</p>
        <label class="field">
          <span class="field-label">API token</span>
          <input type="password" name="token" autocomplete="current-password" required
            value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        </label>
        {shown ? (
          <p class="error" role="alert" data-error={shown.code}>
            {shown.status === 401
              ? `Sign-in failed: the API refused the token (${shown.message}).`
              : `Sign-in failed: ${shown.message}`}
          </p>
        ) : null}
        <button type="submit" class="primary" disabled={busy || !token.trim()}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
