//! What settings sections share: the [`Secret`] type, and readers for
//! `#[serde(deserialize_with = …)]` that let one load report every wrong
//! key. serde stops at the first error; a reader here records a wrong value
//! with its span and stands in a default, so deserializing goes on. A load
//! with anything recorded fails, so a stand-in is never used. Pure: the
//! file, the environment and the key paths are `config`'s.

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error};

/// A secret value (password, token). Its `Debug` and `Display` never show it.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The only way to read the value: greppable, so every use is deliberate.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Spans and messages of wrong values.
pub type Found = Vec<(Range<usize>, String)>;

thread_local! {
    /// What the readers of the load running on this thread found wrong
    /// (`Deserialize` has no parameter that could carry it).
    static FOUND: RefCell<Option<Found>> = const { RefCell::new(None) };
}

/// Runs a deserialization and returns what its readers found wrong.
pub fn collecting<T>(f: impl FnOnce() -> T) -> (T, Found) {
    FOUND.set(Some(Vec::new()));
    let out = f();
    (out, FOUND.take().unwrap_or_default())
}

/// A `T` passed through `check`; `None` when either says no, which is
/// recorded (outside a load, the error is returned as serde would).
pub fn read<'de, T, U, D>(
    d: D,
    check: impl FnOnce(T) -> Result<U, String>,
) -> Result<Option<U>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    /// `T` or why not: catching the error lets the deserializer go on.
    struct Caught<T>(Result<T, String>);
    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Caught<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(Caught(T::deserialize(d).map_err(|e| e.to_string())))
        }
    }
    let value = toml::Spanned::<Caught<T>>::deserialize(d)?;
    let span = value.span();
    match value.into_inner().0.and_then(check) {
        Ok(v) => Ok(Some(v)),
        Err(e) => FOUND.with_borrow_mut(|found| match found {
            Some(found) => {
                found.push((span, reword(&e)));
                Ok(None)
            }
            None => Err(D::Error::custom(e)),
        }),
    }
}

/// The reader for most keys: a wrong value stands in as `T::default()`.
pub fn lenient<'de, T: Deserialize<'de> + Default, D: Deserializer<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(read(d, Ok)?.unwrap_or_default())
}

/// A list item that is left out, recorded, when wrong: `Vec<Each<T>>`.
pub struct Each<T>(pub Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Each<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read(d, Ok).map(Each)
    }
}

/// A list whose wrong items are each recorded and left out.
pub fn list<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    let items: Vec<Each<T>> = lenient(d)?;
    Ok(items.into_iter().filter_map(|i| i.0).collect())
}

/// A string that `check` accepts.
pub fn text<'de, U: Default, D: Deserializer<'de>>(
    d: D,
    check: impl FnOnce(String) -> Result<U, String>,
) -> Result<U, D::Error> {
    Ok(read(d, check)?.unwrap_or_default())
}

/// An integer within `MIN..=MAX`.
pub fn int<'de, const MIN: i64, const MAX: i64, T, D>(d: D) -> Result<T, D::Error>
where
    T: TryFrom<i64> + Default,
    D: Deserializer<'de>,
{
    let within = |n: i64| {
        want((MIN..=MAX).contains(&n), n, |_| {
            format!("expected {MIN}-{MAX}")
        })
    };
    Ok(read(d, within)?
        .and_then(|n| T::try_from(n).ok())
        .unwrap_or_default())
}

/// A duration given in seconds within `MIN..=MAX`.
pub fn secs<'de, const MIN: i64, const MAX: i64, D: Deserializer<'de>>(
    d: D,
) -> Result<Duration, D::Error> {
    int::<MIN, MAX, u64, D>(d).map(Duration::from_secs)
}

/// A port, 1-65535.
pub fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    int::<1, 65535, u16, D>(d)
}

/// A default of `N` seconds, for `#[serde(default = "…")]`.
pub fn seconds<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

/// A host name or IP address.
pub fn host<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '/';
    text(d, |h| {
        want(!h.is_empty() && !h.contains(bad), h, |_| {
            "expected a host name or IP address".into()
        })
    })
}

/// Text that may go into a mail header: one line, not empty.
pub fn line<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    text(d, |s| {
        let ok = !s.trim().is_empty() && !s.contains(super::ids::is_header_breaking);
        let why = |_: &_| "must be one line, not empty, without control characters".into();
        want(ok, s.trim().to_owned(), why)
    })
}

/// An `http://` or `https://` URL, kept without a trailing slash.
pub fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    text(d, |u| {
        let ok = u.starts_with("http://") || u.starts_with("https://");
        let why = |u: &String| format!("expected an http:// or https:// URL, got {u:?}");
        want(ok, u.trim_end_matches('/').to_owned(), why)
    })
}

/// An address and port, as a check for [`read`].
pub fn socket_addr(s: String) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("expected ADDRESS:PORT such as 127.0.0.1:9480, got {s:?}"))
}

/// `Ok(s)` if `ok`, else `Err(why)`: the shape of most checks.
pub fn want<T>(ok: bool, s: T, why: impl FnOnce(&T) -> String) -> Result<T, String> {
    if ok { Ok(s) } else { Err(why(&s)) }
}

/// serde's messages, reworded: what to write first, and never the value
/// given, which may be a secret.
fn reword(e: &str) -> String {
    let e = e.lines().next().unwrap_or_default().trim();
    // "unknown variant `maybe`, expected one of `implicit`, `starttls`, `none`"
    if let Some((given, expected)) = e
        .strip_prefix("unknown variant ")
        .and_then(|e| e.split_once(", expected "))
    {
        let names: Vec<String> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|n| format!("{n:?}"))
            .collect();
        if let Some((last, first)) = names.split_last() {
            let given = given.trim_matches('`');
            return format!("expected {} or {last}, got {given:?}", first.join(", "));
        }
    }
    let Some((found, expected)) = e
        .strip_prefix("invalid type: ")
        .and_then(|r| r.rsplit_once(", expected "))
    else {
        return e.to_owned();
    };
    let found = match found.split([' ', '`', '"']).next() {
        Some("string") => "a string",
        Some("integer") => "an integer",
        Some("floating") => "a number",
        Some("boolean") => "true/false",
        Some("sequence") => "a list",
        Some("map") => "a table",
        _ => "something else",
    };
    let expected = match expected {
        "a sequence" => "a list",
        "path string" => "a string",
        "i64" | "u64" | "u32" | "u16" => "an integer",
        e if e.starts_with("struct ") => "a table",
        e => e,
    };
    format!("expected {expected}, found {found}")
}
