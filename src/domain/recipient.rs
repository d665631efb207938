//! Who a reply goes to when the mail it answers was not written by a
//! person for us: list mail, where "reply" would reach the whole list, and
//! automatic mail (an out-of-office, a bounce), which nobody reads.

use super::email::{AutoKind, Party};
use super::hygiene::is_robot_address;
use super::ids::EmailAddress;

/// What the list says about a mail (from its headers).
#[derive(Debug, Clone, Copy)]
pub struct ListMail<'a> {
    pub from: &'a Party,
    pub reply_to: &'a [Party],
    /// `List-Post: <mailto:…>`.
    pub list_post: Option<&'a EmailAddress>,
    /// `X-Original-From` / `X-Original-Sender`.
    pub original_from: Option<&'a Party>,
}

/// The person who wrote a list mail, if one can be told apart from the
/// list: the list's own record of the author (`X-Original-From`), else the
/// From when it is a person, else — when the list rewrote From to itself
/// for DMARC ("Carol via Dev List" <dev@lists.example>) — the Reply-To it
/// set to the author. `ours` says which addresses are the shared mailbox.
pub fn list_author(mail: ListMail<'_>, ours: impl Fn(&EmailAddress) -> bool) -> Option<Party> {
    let is_list =
        |a: &EmailAddress| mail.list_post.is_some_and(|l| l == a) || is_robot_address(a) || ours(a);
    if let Some(p) = mail.original_from.filter(|p| !is_list(&p.address)) {
        return Some(p.clone());
    }
    let rewritten = is_list(&mail.from.address)
        || mail
            .from
            .name
            .as_deref()
            .is_some_and(|n| n.to_ascii_lowercase().contains(" via "));
    if !rewritten {
        return Some(mail.from.clone());
    }
    mail.reply_to
        .iter()
        .find(|p| !is_list(&p.address) && p.address != mail.from.address)
        .cloned()
}

/// Whether mail of this kind was written by no person: answering it
/// answers a robot.
pub fn is_robot_mail(auto: Option<AutoKind>) -> bool {
    matches!(
        auto,
        Some(AutoKind::AutoReply | AutoKind::Bounce | AutoKind::NullSender)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(name: Option<&str>, a: &str) -> Party {
        Party::new(name.map(str::to_owned), EmailAddress::parse(a).unwrap())
    }

    fn ours(a: &EmailAddress) -> bool {
        a.as_str().starts_with("support") && a.domain() == "example.com"
    }

    #[test]
    fn a_person_posting_to_a_list_is_answered_alone() {
        let from = party(Some("Carol"), "carol@customer.example");
        let list = EmailAddress::parse("dev@lists.example").unwrap();
        // The list sets Reply-To to itself: a reply must still not go there.
        let reply_to = [party(None, "dev@lists.example")];
        let m = ListMail {
            from: &from,
            reply_to: &reply_to,
            list_post: Some(&list),
            original_from: None,
        };
        assert_eq!(list_author(m, ours), Some(from.clone()));
    }

    #[test]
    fn a_dmarc_rewritten_from_is_answered_through_the_authors_reply_to() {
        // Mailman / Google Groups with DMARC mitigation.
        let from = party(Some("Carol via Dev List"), "dev@lists.example");
        let list = EmailAddress::parse("dev@lists.example").unwrap();
        let reply_to = [party(Some("Carol"), "carol@customer.example")];
        let m = ListMail {
            from: &from,
            reply_to: &reply_to,
            list_post: Some(&list),
            original_from: None,
        };
        assert_eq!(list_author(m, ours), Some(reply_to[0].clone()));
        // Without List-Post, the "via" name gives it away.
        let m = ListMail {
            list_post: None,
            ..m
        };
        assert_eq!(list_author(m, ours), Some(reply_to[0].clone()));
        // X-Original-From wins over everything.
        let original = party(Some("Carol C."), "carol.c@customer.example");
        let m = ListMail {
            original_from: Some(&original),
            ..m
        };
        assert_eq!(list_author(m, ours), Some(original));
    }

    #[test]
    fn no_person_to_be_found_is_none() {
        // A rewritten From and a Reply-To back to the list (or to us).
        let from = party(Some("Carol via Dev List"), "dev@lists.example");
        let list = EmailAddress::parse("dev@lists.example").unwrap();
        for reply_to in [
            vec![],
            vec![party(None, "dev@lists.example")],
            vec![party(None, "support@example.com")],
            vec![party(None, "dev-bounces@lists.example")],
        ] {
            let m = ListMail {
                from: &from,
                reply_to: &reply_to,
                list_post: Some(&list),
                original_from: None,
            };
            assert_eq!(list_author(m, ours), None, "{reply_to:?}");
        }
        // A newsletter from a no-reply robot.
        let from = party(Some("Shop News"), "noreply@shop.example");
        let m = ListMail {
            from: &from,
            reply_to: &[],
            list_post: None,
            original_from: None,
        };
        assert_eq!(list_author(m, ours), None);
    }

    #[test]
    fn robot_mail_kinds() {
        assert!(is_robot_mail(Some(AutoKind::AutoReply)));
        assert!(is_robot_mail(Some(AutoKind::Bounce)));
        assert!(is_robot_mail(Some(AutoKind::NullSender)));
        assert!(!is_robot_mail(Some(AutoKind::List)));
        assert!(!is_robot_mail(None));
    }
}
