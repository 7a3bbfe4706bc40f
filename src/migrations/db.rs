//! Connections (TLS or not), redaction of the URL, and the migration lock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, Config, NoTls};

use super::MigrationError;
use crate::events::{Event, EventSink};
use crate::secret::SecretString;

const APPLICATION_NAME: &str = "stackwright migrations";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a waiting run retries `pg_try_advisory_lock`.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// The advisory lock key: the first 8 bytes of `sha256("stackwright_migrations")`.
/// Advisory locks are per database, so runs against different databases never contend.
pub(crate) fn lock_key() -> i64 {
    let digest = Sha256::digest(b"stackwright_migrations");
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// What the URL asks for, once the parameters tokio-postgres does not understand
/// (`sslmode=verify-*`, `sslrootcert`) are taken out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Prepared {
    /// The connection string to hand to tokio-postgres.
    pub conn: String,
    pub tls: bool,
    pub root_cert: Option<PathBuf>,
}

/// Rewrites `sslmode` for tokio-postgres (which knows disable/prefer/require) and pulls out
/// `sslrootcert`. Works on URLs (`postgres://…?sslmode=…`) and key=value strings.
pub(crate) fn prepare(url: &str) -> Result<Prepared, MigrationError> {
    let mut tls = false;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<Option<String>, MigrationError> {
        match key {
            "sslmode" => {
                let mapped = match value {
                    "disable" => "disable",
                    "allow" | "prefer" => "prefer",
                    "require" | "verify-ca" | "verify-full" => {
                        tls = true;
                        "require"
                    }
                    other => {
                        return Err(MigrationError::Connect {
                            message: format!(
                                "sslmode={other} is not one of disable, allow, prefer, \
                                 require, verify-ca, verify-full"
                            ),
                        });
                    }
                };
                Ok(Some(format!("sslmode={mapped}")))
            }
            "sslrootcert" => {
                root_cert = Some(PathBuf::from(value));
                Ok(None)
            }
            _ => Ok(Some(format!("{key}={value}"))),
        }
    };
    let conn = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if let Some(p) = take(&percent_decode(k), &percent_decode(v))? {
                        // Re-encode only what we rewrote; other pairs pass through as given.
                        kept.push(if k == "sslmode" { p } else { pair.to_string() });
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some((k, v)) => {
                    if let Some(p) = take(k, v.trim_matches('\''))? {
                        kept.push(if k == "sslmode" { p } else { token.to_string() });
                    }
                }
                None => kept.push(token.to_string()),
            }
        }
        kept.join(" ")
    };
    Ok(Prepared {
        conn,
        tls,
        root_cert,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Replaces the URL and its password (as written and percent-decoded) with `***`.
#[derive(Clone, Debug)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(url: &str) -> Self {
        let mut secrets = vec![url.to_string()];
        if let Some(password) = password_of(url) {
            secrets.push(percent_decode(&password));
            secrets.push(password);
        }
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }
}

/// The password component of a URL or key=value connection string.
pub(crate) fn password_of(url: &str) -> Option<String> {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let (userinfo, _) = authority.rsplit_once('@')?;
        let (_, password) = userinfo.split_once(':')?;
        return Some(password.to_string());
    }
    url.split_whitespace()
        .find_map(|t| t.strip_prefix("password="))
        .map(|p| p.trim_matches('\'').to_string())
}

fn tls_config(root_cert: Option<&PathBuf>) -> Result<rustls::ClientConfig, MigrationError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = root_cert {
        let pem = std::fs::read(path).map_err(|e| MigrationError::Connect {
            message: format!("cannot read sslrootcert {}: {e}", path.display()),
        })?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| MigrationError::Connect {
                message: format!("sslrootcert {} is not PEM: {e}", path.display()),
            })?;
            roots.add(cert).map_err(|e| MigrationError::Connect {
                message: format!("sslrootcert {}: {e}", path.display()),
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(MigrationError::Connect {
                message: format!("sslrootcert {} holds no certificate", path.display()),
            });
        }
    }
    // The provider is chosen explicitly, so nothing depends on a process-wide default.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MigrationError::Connect {
            message: format!("TLS setup: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Connects and spawns the connection task. Errors never contain the URL or password.
pub(crate) async fn connect(url: &SecretString) -> Result<Client, MigrationError> {
    let redactor = Redactor::new(url.expose());
    let prepared = prepare(url.expose())?;
    let mut config: Config =
        prepared
            .conn
            .parse()
            .map_err(|e: tokio_postgres::Error| MigrationError::Connect {
                message: redactor.apply(&format!(
                    "the URL is not a valid PostgreSQL connection string: {}",
                    db_message(&e)
                )),
            })?;
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let target = describe(&config);
    let fail = |e: &tokio_postgres::Error| MigrationError::Connect {
        message: redactor.apply(&format!("{} ({target})", db_message(e))),
    };
    if prepared.tls {
        let tls =
            tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(prepared.root_cert.as_ref())?);
        let (client, connection) = config.connect(tls).await.map_err(|e| fail(&e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    } else {
        let (client, connection) = config.connect(NoTls).await.map_err(|e| fail(&e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// `host:port/dbname as user`, for connection errors (no password).
fn describe(config: &Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("?");
    let user = config.get_user().unwrap_or("?");
    format!("{host}:{port}/{db} as {user}")
}

/// `SQLSTATE message` for server errors; otherwise the error and its causes (tokio-postgres
/// keeps the cause out of `Display`).
pub(crate) fn db_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}", db.code().code(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub(crate) fn db_error(what: &str) -> impl Fn(tokio_postgres::Error) -> MigrationError + '_ {
    move |e| MigrationError::Database {
        what: what.to_string(),
        message: db_message(&e),
    }
}

/// `"name"` with inner quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The advisory lock, held by its own session for the whole run.
pub(crate) struct MigrationLock {
    client: Client,
}

impl MigrationLock {
    /// Polls `pg_try_advisory_lock` until it succeeds or `timeout` passes.
    pub async fn acquire(
        url: &SecretString,
        timeout: Duration,
        events: &dyn EventSink,
        address: &str,
    ) -> Result<MigrationLock, MigrationError> {
        let client = connect(url).await?;
        // The lock lives as long as this session: keep the server from closing it while
        // the run is busy on its other connection (the setting is new in PostgreSQL 14).
        let _ = client.batch_execute("SET idle_session_timeout = 0").await;
        let started = Instant::now();
        let mut announced = false;
        loop {
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&lock_key()])
                .await
                .map_err(db_error("taking the migration lock"))?
                .get(0);
            if got {
                return Ok(MigrationLock { client });
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(MigrationError::Locked { waited });
            }
            if !announced {
                events.emit(Event::Waiting {
                    address: address.to_string(),
                    status: "waiting for another migration run to release the lock".into(),
                    elapsed: waited,
                });
                announced = true;
            }
            tokio::time::sleep(LOCK_POLL.min(timeout - waited)).await;
        }
    }

    /// Unlocks and closes the session (closing alone would also release it).
    pub async fn release(self) {
        let _ = self
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&lock_key()])
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_mapped_and_rootcert_taken_out() {
        let p = prepare("postgres://u:p@db.example.com:5432/app?sslmode=verify-full&sslrootcert=%2Fetc%2Frds.pem&connect_timeout=3").unwrap();
        assert!(p.tls);
        assert_eq!(p.root_cert, Some(PathBuf::from("/etc/rds.pem")));
        assert_eq!(
            p.conn,
            "postgres://u:p@db.example.com:5432/app?sslmode=require&connect_timeout=3"
        );

        let p = prepare("postgres://u:p@h/app?sslmode=require").unwrap();
        assert!(p.tls);
        let p = prepare("postgres://u:p@h/app?sslmode=disable").unwrap();
        assert!(!p.tls);
        let p = prepare("postgres://u:p@h/app").unwrap();
        assert!(!p.tls);
        assert_eq!(p.conn, "postgres://u:p@h/app");
        let p = prepare("host=h user=u password=secret sslmode=verify-ca dbname=app").unwrap();
        assert!(p.tls);
        assert_eq!(
            p.conn,
            "host=h user=u password=secret sslmode=require dbname=app"
        );
        let err = prepare("postgres://u:hunter2@h/app?sslmode=sometimes").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("sslmode=sometimes") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn redaction() {
        let url = "postgres://app:s%40cret@db:5432/app";
        assert_eq!(password_of(url).as_deref(), Some("s%40cret"));
        let r = Redactor::new(url);
        assert_eq!(
            r.apply(&format!("connecting to {url} with s@cret and s%40cret")),
            "connecting to *** with *** and ***"
        );
        assert_eq!(
            password_of("host=h password=secret user=u").as_deref(),
            Some("secret")
        );
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(password_of("postgres://app@db/app"), None);
    }

    #[test]
    fn lock_key_is_stable() {
        assert_eq!(lock_key(), lock_key());
        assert_ne!(lock_key(), 0);
    }
}
