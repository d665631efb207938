//! When the bot long-polls `/sync` and when it polls.
//!
//! A long-poll held open on the homeserver is evaluated again for every
//! event in the bot's rooms, even when the bot's filter leaves that event
//! out. While the bot posts a burst of mail (the backlog after a start, a
//! flood of mail), that is a second sync computation per post beside the
//! teammates' own, and the homeserver is what bounds a backlog
//! (docs/PERFORMANCE.md). Only mail posted counts: notices answering
//! teammates do not, so a busy conversation keeps the long-poll.
//! So during a burst the bot polls once every [`POLL_EVERY`] instead: one
//! computation per second, whatever the number of posts. Reactions and
//! commands made during a burst are then seen within about a second, not at
//! once; when the burst is over, the bot long-polls again.

use std::time::{Duration, Instant};

/// Mail posts that make a burst: this many within [`BURST_WINDOW`].
const BURST_POSTS: usize = 4;
const BURST_WINDOW: Duration = Duration::from_secs(2);
/// A burst is over when the bot has not posted for this long.
const QUIET_AFTER: Duration = Duration::from_secs(3);
/// How often the bot polls during a burst.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// How the next `/sync` should wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Held open by the homeserver until something arrives.
    LongPoll,
    /// Answered at once; the next one follows after [`POLL_EVERY`].
    Poll,
}

/// The bot's recent posts, enough to tell a burst.
#[derive(Debug, Default)]
pub struct Pace {
    /// The times of the last [`BURST_POSTS`] posts, a ring; `next` is the
    /// slot to write, which holds the oldest.
    recent: [Option<Instant>; BURST_POSTS],
    next: usize,
    in_burst: bool,
}

impl Pace {
    /// Records a post made at `now`. True when this post starts a burst:
    /// a long-poll open now should be ended, not waited out.
    pub fn posted(&mut self, now: Instant) -> bool {
        self.recent[self.next] = Some(now);
        self.next = (self.next + 1) % BURST_POSTS;
        let oldest = self.recent[self.next];
        let starts = !self.in_burst
            && oldest.is_some_and(|t| now.saturating_duration_since(t) <= BURST_WINDOW);
        if starts {
            self.in_burst = true;
        }
        starts
    }

    /// How to sync at `now`.
    pub fn mode(&mut self, now: Instant) -> SyncMode {
        if self.in_burst {
            let last = self.recent[(self.next + BURST_POSTS - 1) % BURST_POSTS];
            if last.is_none_or(|t| now.saturating_duration_since(t) > QUIET_AFTER) {
                self.in_burst = false;
            }
        }
        if self.in_burst {
            SyncMode::Poll
        } else {
            SyncMode::LongPoll
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_few_posts_keep_the_long_poll() {
        let t0 = Instant::now();
        let mut p = Pace::default();
        for i in 0..3 {
            assert!(!p.posted(t0 + ms(i * 10)));
        }
        assert_eq!(p.mode(t0 + ms(40)), SyncMode::LongPoll);
        // Posts spread out more than the window apart never make a burst.
        for i in 3..20 {
            assert!(!p.posted(t0 + ms(i * 700)), "post {i}");
            assert_eq!(p.mode(t0 + ms(i * 700)), SyncMode::LongPoll);
        }
    }

    #[test]
    fn a_burst_starts_once_and_ends_when_posting_stops() {
        let t0 = Instant::now();
        let mut p = Pace::default();
        let starts: Vec<bool> = (0..10).map(|i| p.posted(t0 + ms(i * 100))).collect();
        assert_eq!(
            starts,
            [
                false, false, false, true, false, false, false, false, false, false
            ],
            "the fourth post within two seconds starts it, once"
        );
        assert_eq!(p.mode(t0 + ms(1_000)), SyncMode::Poll);
        // The last post was at 900 ms: still a burst three seconds later.
        assert_eq!(p.mode(t0 + ms(3_900)), SyncMode::Poll);
        assert_eq!(p.mode(t0 + ms(3_901)), SyncMode::LongPoll);
        // A later burst starts again.
        let later = t0 + ms(10_000);
        let starts: Vec<bool> = (0..4).map(|i| p.posted(later + ms(i))).collect();
        assert_eq!(starts, [false, false, false, true]);
        assert_eq!(p.mode(later + ms(5)), SyncMode::Poll);
    }

    #[test]
    fn a_steady_stream_stays_one_burst() {
        let t0 = Instant::now();
        let mut p = Pace::default();
        let mut started = 0;
        for i in 0..1_000 {
            let now = t0 + ms(i * 40);
            started += usize::from(p.posted(now));
            assert_eq!(
                p.mode(now),
                if i >= 3 {
                    SyncMode::Poll
                } else {
                    SyncMode::LongPoll
                }
            );
        }
        assert_eq!(started, 1);
    }
}
