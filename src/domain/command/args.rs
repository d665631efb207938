//! The `key=value` arguments of `!template`: bare words and quoted strings.

use std::collections::BTreeMap;

use super::quoted;

/// `key=value key2="quoted value" …`. A value is a bare word or a quoted
/// string; `\"` and `\\` are the only escapes, any other backslash is kept.
pub(super) fn parse_vars(src: &str) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    let mut rest = src.trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let (key, after_key) = rest.split_at(key_end);
        let Some(value_src) = after_key.strip_prefix('=') else {
            return Err(format!(
                "{} has no value: template variables are written key=value",
                quoted(key)
            ));
        };
        let valid_key = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid_key {
            return Err(format!(
                "{} is not a variable name: use letters, digits, '_', '-' and '.'",
                quoted(key)
            ));
        }
        let (value, after_value) = match value_src.chars().next().and_then(closing_quote) {
            Some(close) => {
                let opening_len = value_src.chars().next().map_or(0, char::len_utf8);
                quoted_value(&value_src[opening_len..], close)
                    .map_err(|why| format!("the value of {key}: {why}"))?
            }
            None => {
                let end = value_src
                    .find(char::is_whitespace)
                    .unwrap_or(value_src.len());
                (value_src[..end].to_owned(), &value_src[end..])
            }
        };
        if vars.insert(key.to_owned(), value).is_some() {
            return Err(format!("variable {key} is given twice"));
        }
        rest = after_value.trim_start();
    }
    Ok(vars)
}

/// The quote that closes a value opened by `open`, if `open` is a quote.
/// Curly quotes count because some keyboards and clients turn `"` into them.
pub(super) fn closing_quote(open: char) -> Option<char> {
    match open {
        '"' => Some('"'),
        '“' => Some('”'),
        _ => None,
    }
}

/// Reads a quoted value after its opening quote; returns the value and what
/// follows the closing quote.
pub(super) fn quoted_value(src: &str, close: char) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = src.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == close {
            let after = &src[i + c.len_utf8()..];
            if !after.is_empty() && !after.starts_with(char::is_whitespace) {
                return Err("put a space after the closing quote".to_owned());
            }
            return Ok((value, after));
        }
        if c == '\\' {
            match chars.clone().next() {
                Some((_, next)) if next == close || next == '\\' => {
                    value.push(next);
                    chars.next();
                }
                _ => value.push('\\'),
            }
        } else {
            value.push(c);
        }
    }
    Err(format!("the quote is never closed (missing {close})"))
}
