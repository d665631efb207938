//! Mail hygiene in the flows: what the card says about a mail's
//! authentication. (The loop guard runs inside the ingest flow.)

use super::App;
use crate::domain::authres::AuthSummary;
use crate::domain::ids::MailboxName;
use crate::domain::render::EmailView;
use crate::mail::parse::InboundEmail;

impl App {
    /// The email as chat shows it, with SPF, DKIM and DMARC as the
    /// mailbox's trusted receiving server found them (see
    /// `domain::authres`).
    pub(crate) fn email_view(&self, mailbox: &MailboxName, parsed: &InboundEmail) -> EmailView {
        let mut view = parsed.view();
        if let Some(m) = self.mailbox(mailbox) {
            let trusted = m.settings.auth_results.trusted(&m.settings.imap.host);
            view.auth = AuthSummary::evaluate(
                &parsed.trace.authentication_results,
                &parsed.trace.arc_results,
                &trusted,
                parsed.from.address.domain(),
            );
        }
        view
    }
}
