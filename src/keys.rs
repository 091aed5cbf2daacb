//! Key and certificate files: the development TLS certificate, the session
//! key and assertion keys. This is file I/O, so it lives outside the core.

use std::fs;
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a secret so that only the owner can read it, via a temporary
/// file and a rename so a crash never leaves half a key behind.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

/// The session HMAC key: 32 random bytes, base64 in a file. Created on
/// first start; copy the file to every instance of one deployment.
pub fn load_or_create_session_key(path: &Path) -> Result<(Vec<u8>, bool), KeyError> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    match fs::read_to_string(path) {
        Ok(text) => {
            let bytes = STANDARD.decode(text.trim()).map_err(|_| KeyError::Invalid {
                path: path.display().to_string(),
                message: "session key is not base64".into(),
            })?;
            if bytes.len() < 32 {
                return Err(KeyError::Invalid {
                    path: path.display().to_string(),
                    message: "session key must be at least 32 bytes".into(),
                });
            }
            Ok((bytes, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes: [u8; 32] = rand::random();
            write_private(path, format!("{}\n", STANDARD.encode(bytes)).as_bytes())?;
            Ok((bytes.to_vec(), true))
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Generates a self-signed development certificate for `localhost` and
/// 127.0.0.1 when neither file exists. Returns whether it generated one.
pub fn ensure_dev_tls(cert: &Path, key: &Path) -> Result<bool, KeyError> {
    if cert.exists() || key.exists() {
        return Ok(false);
    }
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    write_private(key, certified.signing_key.serialize_pem().as_bytes())?;
    if let Some(dir) = cert.parent() {
        if !dir.as_os_str().is_empty() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
    }
    fs::write(cert, certified.cert.pem()).map_err(io(cert))?;
    Ok(true)
}

pub fn read_text(path: &Path) -> Result<String, KeyError> {
    fs::read_to_string(path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_key_is_created_private_and_reused() {
        let dir = crate::ids::test_tmp().join(format!("stepgate-keys-{}", crate::ids::random_token()));
        let path = dir.join("state/session.key");
        let (k1, created) = load_or_create_session_key(&path).expect("create");
        assert!(created);
        let (k2, created) = load_or_create_session_key(&path).expect("reuse");
        assert!(!created);
        assert_eq!(k1, k2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = fs::remove_dir_all(dir);
    }
}
