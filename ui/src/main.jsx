// The app shell: sign-in with the API token, the navigation and the page for the current path.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { session, whoAmI } from './api.js';
import { Link, match, navigate, useLocation } from './router.js';
import { SignIn } from './pages/SignIn.jsx';
import { WorkflowList } from './pages/WorkflowList.jsx';
import { WorkflowDetail } from './pages/WorkflowDetail.jsx';
import { InstanceList } from './pages/InstanceList.jsx';
import { InstancePage } from './pages/InstancePage.jsx';
import { Schedules } from './pages/Schedules.jsx';
import { Cluster } from './pages/Cluster.jsx';
import './style.css';

const ROUTES = [
  ['/ui', () => <WorkflowList />],
  ['/ui/workflows', () => <WorkflowList />],
  ['/ui/workflows/:id', (p) => <WorkflowDetail id={p.id} />],
  ['/ui/instances', () => <InstanceList />],
  ['/ui/instances/:id', (p) => <InstancePage id={p.id} />],
  ['/ui/schedules', () => <Schedules />],
  ['/ui/cluster', () => <Cluster />],
];

const NAV = [
  ['/ui/workflows', 'Workflows'],
  ['/ui/instances', 'Instances'],
  ['/ui/schedules', 'Schedules'],
  ['/ui/cluster', 'Cluster'],
];

function page(path) {
  const clean = path.split('?')[0].replace(/\/+$/, '') || '/ui';
  for (const [pattern, view] of ROUTES) {
    const p = match(pattern, clean);
    if (p) return view(p);
  }
  return (
    <section>
      <h1>Not found</h1>
      <p>There is no page at {clean}. <Link href="/ui/workflows">Go to the workflows</Link>.</p>
    </section>
  );
}

function App() {
  const loc = useLocation();
  const [user, setUser] = useState(null);
  const [checking, setChecking] = useState(Boolean(session.token()));
  const [signInError, setSignInError] = useState(null);

  useEffect(() => {
    const t = session.token();
    if (!t) return;
    whoAmI(t)
      .then(setUser)
      .catch((e) => {
        if (e.status === 401) session.clear();
        setSignInError(e);
      })
      .finally(() => setChecking(false));
  }, []);

  useEffect(() => {
    const onUnauthorized = (e) => {
      session.clear();
      setUser(null);
      setSignInError(e.detail);
    };
    window.addEventListener('dk-unauthorized', onUnauthorized);
    return () => window.removeEventListener('dk-unauthorized', onUnauthorized);
  }, []);

  useEffect(() => {
    const seg = loc.split('?')[0].split('/')[2] || 'workflows';
    document.title = `dagkeeper · ${seg}`;
  }, [loc]);

  if (checking) return <p class="muted center">Checking your token…</p>;
  if (!user) {
    return (
      <SignIn error={signInError}
        onSignedIn={(u) => {
          setSignInError(null);
          setUser(u);
        }} />
    );
  }
  const path = loc.split('?')[0].replace(/\/+$/, '');
  const here = path === '/ui' ? '/ui/workflows' : path;
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <Link href="/ui/workflows" class="brand" aria-label="dagkeeper home">dagkeeper</Link>
        <nav aria-label="main">
          {NAV.map(([href, label]) => (
            <Link key={href} href={href}
              aria-current={here === href || here.startsWith(`${href}/`) ? 'page' : undefined}>
              {label}
            </Link>
          ))}
        </nav>
        <span class="who" title={user.bootstrap ? 'the bootstrap API token' : ''}>
          {user.name} · {user.role}
        </span>
        <button type="button" class="link" onClick={() => {
          session.clear();
          setUser(null);
          navigate('/ui/workflows');
        }}>Sign out</button>
      </header>
      <main id="main" tabindex="-1">{page(loc)}</main>
    </>
  );
}

render(<App />, document.getElementById('app'));
