//! The HTTP sinks' transport (Pyroscope's `/ingest`, OTLP/HTTP): a POST per delivery, with a
//! tenant header and credentials read from files, HTTPS checked against the system's root
//! certificates. What the server's answer means for the delivery: 2xx sent; 408, 429, 5xx,
//! 401, 403, 404 and any connection failure retried later (the server or its configuration
//! may come back); other 4xx rejected (this body will never be accepted; counted and logged).

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::agent::config::Auth;
use crate::agent::delivery::Delivery;
use crate::agent::sink::{SendError, Transport};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request, answer included: a server that hangs costs at most this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How much of an error answer is quoted in the log.
const MAX_QUOTED: usize = 200;
const MAX_SECRET_FILE: u64 = 64 << 10;

pub struct HttpSink {
    agent: ureq::Agent,
    base_url: String,
    /// What `base_url` may already end with (OTLP: `/v1development/profiles`).
    full_path: Option<&'static str>,
    tenant: Option<String>,
    auth: Auth,
}

impl HttpSink {
    pub fn new(
        base_url: &str,
        full_path: Option<&'static str>,
        tenant: Option<String>,
        auth: Auth,
    ) -> HttpSink {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("pyspy-bpf/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        HttpSink {
            agent,
            base_url: base_url.trim_end_matches('/').to_string(),
            full_path,
            tenant,
            auth,
        }
    }

    fn url(&self, target: &str) -> String {
        match self.full_path {
            // The URL given is the endpoint itself.
            Some(path) if self.base_url.ends_with(path) => {
                let query = target.strip_prefix(path).unwrap_or("");
                format!("{}{query}", self.base_url)
            }
            _ => format!("{}{target}", self.base_url),
        }
    }

    fn authorization(&self) -> Result<Option<String>, String> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Basic {
                user,
                password_file,
            } => {
                let password = read_secret(password_file)?;
                Ok(Some(format!(
                    "Basic {}",
                    base64(format!("{user}:{password}").as_bytes())
                )))
            }
            Auth::Bearer { token_file } => Ok(Some(format!("Bearer {}", read_secret(token_file)?))),
        }
    }
}

impl Transport for HttpSink {
    fn send(&mut self, d: &Delivery) -> Result<u64, SendError> {
        let url = self.url(&d.target);
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", d.content_type.as_str());
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant.as_str());
        }
        // Read for each request, so that a rotated secret is used without a restart.
        match self.authorization() {
            Ok(Some(value)) => request = request.header("Authorization", value.as_str()),
            Ok(None) => {}
            Err(e) => return Err(SendError::Retry(e)),
        }
        let mut response = request
            .send(&d.body[..])
            .map_err(|e| SendError::Retry(format!("POST {}: {e}", self.base_url)))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(d.body.len() as u64);
        }
        let mut answer = Vec::new();
        let _ = response
            .body_mut()
            .as_reader()
            .take(MAX_QUOTED as u64)
            .read_to_end(&mut answer);
        let answer: String = String::from_utf8_lossy(&answer)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let message = format!("POST {}: HTTP {status}: {}", self.base_url, answer.trim());
        match status {
            408 | 429 | 401 | 403 | 404 | 500..=599 => Err(SendError::Retry(message)),
            _ => Err(SendError::Reject(message)),
        }
    }

    fn describe(&self) -> String {
        self.base_url.clone()
    }
}

/// A secret from a file: its first line, trimmed.
fn read_secret(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("credentials file {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_SECRET_FILE)
        .read_to_string(&mut text)
        .map_err(|e| format!("credentials file {}: {e}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim().to_string();
    if secret.is_empty() {
        return Err(format!("credentials file {}: empty", path.display()));
    }
    Ok(secret)
}

/// Standard base64 with padding (RFC 4648), for a basic-auth header.
fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn otlp_url_with_or_without_the_path() {
        let s = HttpSink::new(
            "http://h:4318/",
            Some("/v1development/profiles"),
            None,
            Auth::None,
        );
        assert_eq!(
            s.url("/v1development/profiles"),
            "http://h:4318/v1development/profiles"
        );
        let s = HttpSink::new(
            "http://h:4318/v1development/profiles",
            Some("/v1development/profiles"),
            None,
            Auth::None,
        );
        assert_eq!(
            s.url("/v1development/profiles"),
            "http://h:4318/v1development/profiles"
        );
    }
}
