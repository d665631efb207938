//! Deserializing that finds every wrong value in one pass. serde stops at the
//! first error; here each key is a [`Key`], which records a wrong value with
//! its span and reads as [`Key::Wrong`], so deserializing goes on. Any
//! recorded problem fails the load, so a stand-in is never used.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer};

/// Spans and messages of wrong values.
type Found = Vec<(Range<usize>, String)>;

thread_local! {
    /// What the keys of the load running on this thread found wrong
    /// (`Deserialize` has no parameter that could carry it).
    static FOUND: RefCell<Option<Found>> = const { RefCell::new(None) };
}

/// Runs a deserialization and returns what its keys found wrong: span, message.
pub(super) fn collecting<T>(f: impl FnOnce() -> T) -> (T, Found) {
    FOUND.set(Some(Vec::new()));
    let out = f();
    (out, FOUND.take().unwrap_or_default())
}

/// One key's value.
#[derive(Default)]
pub(super) enum Key<T> {
    #[default]
    Absent,
    /// In the file but wrong; the problem is recorded.
    Wrong,
    Is(T),
}

impl<T> Key<T> {
    pub(super) fn get(self) -> Option<T> {
        match self {
            Key::Is(v) => Some(v),
            Key::Absent | Key::Wrong => None,
        }
    }
    pub(super) fn or(self, default: T) -> T {
        self.get().unwrap_or(default)
    }
    pub(super) fn or_default(self) -> T
    where
        T: Default,
    {
        self.get().unwrap_or_default()
    }
    /// In the file, right or wrong.
    pub(super) fn given(&self) -> bool {
        !matches!(self, Key::Absent)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Key<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// `T` or why not: catching the error lets the deserializer go on.
        struct Caught<T>(Result<T, String>);
        impl<'de, T: Deserialize<'de>> Deserialize<'de> for Caught<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Caught(T::deserialize(d).map_err(|e| e.to_string())))
            }
        }
        let value = toml::Spanned::<Caught<T>>::deserialize(d)?;
        let span = value.span();
        match value.into_inner().0 {
            Ok(v) => Ok(Key::Is(v)),
            Err(e) => FOUND.with_borrow_mut(|found| match found {
                Some(found) => {
                    found.push((span, reword(&e)));
                    Ok(Key::Wrong)
                }
                None => Err(de::Error::custom(e)), // not inside a load
            }),
        }
    }
}

/// serde's messages, reworded: what to write first,
/// and never the value given, which may be a secret.
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
        e if e.starts_with("struct ") => "a table",
        e => e,
    };
    format!("expected {expected}, found {found}")
}

/// An integer within `MIN..=MAX`.
pub(super) struct Int<const MIN: i64, const MAX: i64>(i64);

impl<'de, const MIN: i64, const MAX: i64> Deserialize<'de> for Int<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Within<const MIN: i64, const MAX: i64>;
        impl<const MIN: i64, const MAX: i64> de::Visitor<'_> for Within<MIN, MAX> {
            type Value = i64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an integer {MIN}-{MAX}")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<i64, E> {
                match (MIN..=MAX).contains(&n) {
                    true => Ok(n),
                    false => Err(E::custom(format!("expected {MIN}-{MAX}"))),
                }
            }
        }
        d.deserialize_i64(Within::<MIN, MAX>).map(Int)
    }
}

impl<const MIN: i64, const MAX: i64> Key<Int<MIN, MAX>> {
    /// The number (within range, so it fits `T`), or `default`.
    pub(super) fn num_or<T: TryFrom<i64>>(self, default: T) -> T {
        self.get()
            .and_then(|n| T::try_from(n.0).ok())
            .unwrap_or(default)
    }
    /// As seconds, or `default` seconds.
    pub(super) fn secs_or(self, default: u64) -> Duration {
        Duration::from_secs(self.num_or(default))
    }
}

/// For `deserialize_with` on a key with a default: a wrong value is recorded
/// and `T::default()` stands in.
pub(super) fn lenient<'de, T: Deserialize<'de> + Default, D: Deserializer<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Key::deserialize(d)?.get().unwrap_or_default())
}

/// Like [`lenient`], for an integer within `MIN..=MAX`.
pub(super) fn int<'de, const MIN: i64, const MAX: i64, T, D>(d: D) -> Result<T, D::Error>
where
    T: TryFrom<i64> + Default,
    D: Deserializer<'de>,
{
    Ok(Key::<Int<MIN, MAX>>::deserialize(d)?.num_or(T::default()))
}

/// Like [`lenient`], for seconds within `MIN..=MAX`.
pub(super) fn secs<'de, const MIN: i64, const MAX: i64, D: Deserializer<'de>>(
    d: D,
) -> Result<Duration, D::Error> {
    Ok(Key::<Int<MIN, MAX>>::deserialize(d)?.secs_or(0))
}

/// Declares a newtype read from a string, which `check` turns into the inner
/// value or says why not.
macro_rules! checked {
    ($(#[$doc:meta])* $name:ident($inner:ty), |$s:ident| $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(try_from = "String")]
        pub(super) struct $name(pub $inner);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from($s: String) -> Result<Self, String> {
                let checked: Result<$inner, String> = $check;
                checked.map($name)
            }
        }
    };
}
pub(super) use checked;

/// `Ok(s)` if `ok`, else `Err(why)`: the shape of most checks.
pub(super) fn want<T>(ok: bool, s: T, why: impl FnOnce(&T) -> String) -> Result<T, String> {
    if ok { Ok(s) } else { Err(why(&s)) }
}

checked!(
    /// A host name or IP address.
    Host(String), |h| want(!h.is_empty() && !h.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/'),
        h, |_| "expected a host name or IP address".into())
);

checked!(
    /// Text that may go into a mail header: not empty, one line.
    Line(String), |s| want(!s.trim().is_empty() && !s.contains(crate::domain::ids::is_header_breaking),
        s.trim().to_owned(), |_| "must be one line, not empty, without control characters".into())
);

checked!(
    /// An `http://` or `https://` URL, kept without a trailing slash.
    HttpUrl(String), |u| want(u.starts_with("http://") || u.starts_with("https://"),
        u.trim_end_matches('/').to_owned(), |u| format!("expected an http:// or https:// URL, got {u:?}"))
);

checked!(
    /// An address and port to listen on.
    Listen(SocketAddr), |s| s.parse().map_err(|_| format!("expected ADDRESS:PORT such as 127.0.0.1:9480, got {s:?}"))
);
