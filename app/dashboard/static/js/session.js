// The connection: an operator's profile, or a tracking URI with an MLflow user and password.
// Kept in this tab's sessionStorage only (never localStorage, a cookie or the URL), and sent
// per request: the password as an Authorization: Basic header, the rest as query fields.
const KEY = "mlflow-logs-dashboard";

export function load() {
  try {
    const held = JSON.parse(sessionStorage.getItem(KEY) || "null");
    return held && (held.profile || held.trackingUri) ? held : null;
  } catch {
    return null;  // storage disabled or a value that is not ours: connect again
  }
}

export function save(connection) {
  sessionStorage.setItem(KEY, JSON.stringify(connection));
}

export function clear() {
  sessionStorage.removeItem(KEY);
}

// {profile, trackingUri, username, password} from the form's values, or an error in words.
export function fromForm({profile, trackingUri, username, password}) {
  profile = profile.trim();
  trackingUri = trackingUri.trim();
  if (profile && (trackingUri || username || password))
    return {problem: "A profile brings its own MLflow server and credentials: " +
                     "leave the tracking URI, user and password empty."};
  if (!profile && !trackingUri)
    return {problem: "Give a profile, or a tracking URI (with your MLflow user and password)."};
  if (!profile && password && !username)
    return {problem: "Give the MLflow user that goes with the password."};
  return {connection: {profile, trackingUri, username, password}};
}

// The query fields naming the server: {profile} or {tracking_uri}.
export function fields(connection) {
  return connection.profile ? {profile: connection.profile}
                            : {tracking_uri: connection.trackingUri};
}

// The Authorization header value, or null (a profile, or a server without auth).
export function authorization(connection) {
  if (connection.profile || !connection.username) return null;
  const bytes = new TextEncoder().encode(`${connection.username}:${connection.password || ""}`);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return "Basic " + btoa(binary);
}
