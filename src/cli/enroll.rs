//! `stepgate enroll`: credentials in the user store.

use super::BadInput;
use stepgate::clock::unix_secs;
use stepgate::config::Config;
use stepgate::stepup::totp;
use stepgate::users::{EnrollToken, TotpRecord, UserStore};

fn check_user(user: &str) -> anyhow::Result<()> {
    if user.is_empty() || !user.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b)) {
        return Err(BadInput(format!("`{user}` is not a valid user name (letters, digits, . _ @ -)")).into());
    }
    Ok(())
}

/// Without `confirm`: creates a pending secret and prints it for the app.
/// With `confirm`: activates the pending secret if the code is current.
pub fn totp(config: &Config, user: &str, confirm: Option<&str>, force: bool) -> anyhow::Result<()> {
    check_user(user)?;
    let store = UserStore::open(&config.stepup.users);
    let now = unix_secs(std::time::SystemTime::now());
    match confirm {
        Some(code) => {
            let file = store.snapshot()?;
            let pending = file.users.get(user).and_then(|u| u.totp.as_ref());
            let Some(record) = pending else {
                return Err(BadInput(format!(
                    "{user} has no TOTP credential to confirm; run `stepgate enroll totp {user}` first"
                ))
                .into());
            };
            if record.confirmed {
                println!("{user}: TOTP is already active");
                return Ok(());
            }
            let Ok(step) = totp::verify(&record.secret, code, now) else {
                return Err(BadInput(format!(
                    "{user}: the code does not match; check the device clock and try the current code"
                ))
                .into());
            };
            let secret = record.secret.clone();
            store.update(|f| {
                if let Some(t) = f.users.get_mut(user).and_then(|u| u.totp.as_mut()) {
                    if t.secret == secret {
                        t.confirmed = true;
                        t.confirmed_step = step;
                    }
                }
            })?;
            println!("{user}: TOTP is now active");
            Ok(())
        }
        None => {
            let active = store.snapshot()?.totp_secret(user).is_some();
            if active && !force {
                return Err(BadInput(format!(
                    "{user} already has an active TOTP credential (use --force to replace it)"
                ))
                .into());
            }
            let secret = totp::generate_secret();
            let uri = totp::otpauth_uri(&secret, user)?;
            store.update(|f| {
                f.users.entry(user.to_owned()).or_default().totp = Some(TotpRecord {
                    secret: secret.clone(),
                    confirmed: false,
                    created: now,
                    confirmed_step: 0,
                });
            })?;
            println!("{uri}");
            println!();
            match qrcode::QrCode::new(uri.as_bytes()) {
                Ok(qr) => println!(
                    "{}",
                    qr.render::<qrcode::render::unicode::Dense1x2>()
                        .quiet_zone(true)
                        .build()
                ),
                Err(e) => eprintln!("(cannot draw a QR code: {e})"),
            }
            println!();
            println!("Scan the code (or enter the secret) in an authenticator app, then activate it with:");
            println!("  stepgate enroll totp {user} --confirm <code>");
            Ok(())
        }
    }
}

/// Stores the SHA-256 of a fresh one-time token (a new link replaces an
/// unused one) and prints the enrollment link with its expiry.
pub fn webauthn(config: &Config, user: &str, ttl: &str) -> anyhow::Result<()> {
    check_user(user)?;
    let Some(rp) = &config.stepup.webauthn else {
        return Err(BadInput(
            "stepup.webauthn is not configured: passkeys need an rp_id and origins (see routes.yaml)".into(),
        )
        .into());
    };
    let ttl = stepgate::config::units::parse_duration(ttl).map_err(|e| BadInput(format!("--ttl: {e}")))?;
    if ttl < std::time::Duration::from_secs(60) || ttl > std::time::Duration::from_secs(7 * 86_400) {
        return Err(BadInput("--ttl must be between 1m and 7d".into()).into());
    }
    let Some(origin) = rp.origins.first() else {
        return Err(BadInput("stepup.webauthn.origins is empty".into()).into());
    };
    let token = {
        use base64::Engine;
        let bytes: [u8; 32] = rand::random();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let expires = unix_secs(std::time::SystemTime::now()) + ttl.as_secs();
    UserStore::open(&config.stepup.users).update(|f| {
        f.users.entry(user.to_owned()).or_default().webauthn_enroll = Some(EnrollToken::new(&token, expires));
    })?;
    let when = i64::try_from(expires)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(|| expires.to_string());
    println!("{origin}{}enroll?token={token}", config.stepup.prefix);
    println!();
    println!(
        "Open this link in a browser to register a passkey or security key for {user}. It works once, until {when}."
    );
    Ok(())
}
