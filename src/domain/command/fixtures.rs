//! Helpers the command parser's tests share.

use std::collections::BTreeMap;

use super::{CommandError, Parsed, RoomCommand, ThreadCommand, parse};
use crate::domain::ids::Tag;

pub(super) fn thread(text: &str) -> ThreadCommand {
    match parse(text) {
        Ok(Parsed::Thread(cmd)) => cmd,
        other => panic!("{text:?} should be a thread command, got {other:?}"),
    }
}

pub(super) fn room(text: &str) -> RoomCommand {
    match parse(text) {
        Ok(Parsed::Room(cmd)) => cmd,
        other => panic!("{text:?} should be a room command, got {other:?}"),
    }
}

pub(super) fn err(text: &str) -> CommandError {
    match parse(text) {
        Err(e) => e,
        Ok(p) => panic!("{text:?} should be refused, got {p:?}"),
    }
}

pub(super) fn reply(text: &str, force: bool, attach: bool) -> ThreadCommand {
    ThreadCommand::Reply {
        text: text.to_owned(),
        force,
        attach,
    }
}

pub(super) fn tags(list: &[&str]) -> Vec<Tag> {
    list.iter().map(|t| Tag::parse(t).unwrap()).collect()
}

pub(super) fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
