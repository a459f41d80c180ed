//! The code table of spec section 3, and the one error type every method
//! returns. Each code's default text lives in one `match`.

use std::fmt;

/// A code of spec section 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Success,
    BadRequest,
    Forbidden,
    UnknownRequest,
    MissingCampaignId,
    InvalidCampaignId,
    NoSuchCampaign,
    MissingFrom,
    InvalidFrom,
    MissingTo,
    InvalidTo,
    MissingFromName,
    MissingToName,
    MissingMessage,
    NoSuchPromo,
    MissingParameter,
    InvalidListId,
    InvalidName,
    BadMedia,
    MediaTooLarge,
    BadMediaType,
    BadMediaName,
    Internal,
    CarrierFailed,
    ServerFailed,
    UserTypeUnknown,
    CarrierUnknown,
    Blacklisted,
    CarrierUnsupported,
    OptedOut,
    InvalidContent,
}

impl Code {
    pub const ALL: [Code; 31] = [
        Code::Success,
        Code::BadRequest,
        Code::Forbidden,
        Code::UnknownRequest,
        Code::MissingCampaignId,
        Code::InvalidCampaignId,
        Code::NoSuchCampaign,
        Code::MissingFrom,
        Code::InvalidFrom,
        Code::MissingTo,
        Code::InvalidTo,
        Code::MissingFromName,
        Code::MissingToName,
        Code::MissingMessage,
        Code::NoSuchPromo,
        Code::MissingParameter,
        Code::InvalidListId,
        Code::InvalidName,
        Code::BadMedia,
        Code::MediaTooLarge,
        Code::BadMediaType,
        Code::BadMediaName,
        Code::Internal,
        Code::CarrierFailed,
        Code::ServerFailed,
        Code::UserTypeUnknown,
        Code::CarrierUnknown,
        Code::Blacklisted,
        Code::CarrierUnsupported,
        Code::OptedOut,
        Code::InvalidContent,
    ];

    /// The number and the default message of spec section 3.
    pub fn info(self) -> (u16, &'static str) {
        match self {
            Code::Success => (1, "Successful request."),
            Code::BadRequest => (400, "The request was rejected for unknown reason."),
            Code::Forbidden => (
                403,
                "Access Forbidden: bad client id or auth token, or ips not whitelisted",
            ),
            Code::UnknownRequest => (404, "Unknown request. Verify object.method is correct."),
            Code::MissingCampaignId => (430, "Missing \"campaign_id\" parameter."),
            Code::InvalidCampaignId => (431, "Invalid \"campaign_id\" parameter."),
            Code::NoSuchCampaign => (
                432,
                "The campaign does not exist. It has been deleted or the campaign_id is incorrect.",
            ),
            Code::MissingFrom => (433, "Missing \"from\" parameter."),
            Code::InvalidFrom => (434, "Invalid \"from\" parameter."),
            Code::MissingTo => (435, "Missing \"to\" parameter."),
            Code::InvalidTo => (436, "Invalid \"to\" parameter."),
            Code::MissingFromName => (437, "Missing \"from_name\" parameter."),
            Code::MissingToName => (438, "Missing \"to_name\" parameter."),
            Code::MissingMessage => (439, "Missing the \"message\" parameter."),
            Code::NoSuchPromo => (
                440,
                "The entered promo code does not match any approved promotions.",
            ),
            Code::MissingParameter => (443, "request is missing a required parameter"),
            Code::InvalidListId => (444, "invalid list_id parameter"),
            Code::InvalidName => (
                445,
                "The request was rejected. The entered \"name\" parameter is invalid.",
            ),
            Code::BadMedia => (460, "Bad Media API request"),
            Code::MediaTooLarge => (461, "Invalid Media Size"),
            Code::BadMediaType => (462, "Invalid Media Type"),
            Code::BadMediaName => (463, "Invalid Media Name"),
            Code::Internal => (500, "Internal fatal error uncaught."),
            Code::CarrierFailed => (600, "Transaction terminated for unknown reasons."),
            Code::ServerFailed => (601, "Transaction terminated for unknown reasons."),
            Code::UserTypeUnknown => (602, "User type unknown. Returns which user and user input."),
            Code::CarrierUnknown => (603, "User carrier unknown. Returns unsupported user phone."),
            Code::Blacklisted => (
                604,
                "User blacklisted by carrier. Returns user phone and carrier.",
            ),
            Code::CarrierUnsupported => (
                605,
                "User carrier unsupported. Returns user phone and carrier.",
            ),
            Code::OptedOut => (606, "User opted out. Returns user phone."),
            Code::InvalidContent => (607, "Content is not valid."),
        }
    }

    pub fn number(self) -> u16 {
        self.info().0
    }

    pub fn text(self) -> &'static str {
        self.info().1
    }

    pub fn from_number(number: u16) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.number() == number)
    }
}

/// Who a 602–606 answer is about: added after `<message>` (spec section 2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// E.164 digits; empty when the input could not be parsed.
    pub number: String,
    /// What the caller sent (602 only).
    pub input: Option<String>,
    /// Carrier id and name (604, 605).
    pub carrier: Option<(i64, String)>,
}

/// Why an HTTP status other than 200 goes with an error (spec section 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Processed: HTTP 200.
    None,
    /// Bad credentials or IP not whitelisted: HTTP 403.
    Credentials,
    /// Too many requests: HTTP 429 with `Retry-After` seconds.
    TooMany { retry_after: u64 },
}

/// Every failure a method can answer with.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub detail: Option<String>,
    /// Boxed: most errors have none, and `Result<_, ApiError>` stays small.
    pub user: Option<Box<UserInfo>>,
    pub rejection: Rejection,
}

impl ApiError {
    pub fn new(code: Code) -> ApiError {
        ApiError {
            code,
            detail: None,
            user: None,
            rejection: Rejection::None,
        }
    }

    /// An error with a detail a developer can act on, shown after `: `.
    pub fn detail(code: Code, detail: impl Into<String>) -> ApiError {
        ApiError {
            detail: Some(detail.into()),
            ..ApiError::new(code)
        }
    }

    pub fn with_user(mut self, user: UserInfo) -> ApiError {
        self.user = Some(Box::new(user));
        self
    }

    /// A failed authentication or whitelist check: HTTP 403.
    pub fn credentials(detail: impl Into<String>) -> ApiError {
        ApiError {
            rejection: Rejection::Credentials,
            ..ApiError::detail(Code::Forbidden, detail)
        }
    }

    /// A server failure: logged here, with its cause, once; the client sees
    /// only code 500.
    pub fn internal(cause: impl fmt::Display) -> ApiError {
        tracing::error!(%cause, "internal error");
        ApiError::new(Code::Internal)
    }

    /// The `message` of the envelope.
    pub fn message(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{}: {}", self.code.text(), detail),
            None => self.code.text().to_string(),
        }
    }

    /// A store failure: code 500, naming the fix when the cause is the
    /// data folder's disk (full, read-only, failing), which an operator can
    /// act on; other causes stay in the log only.
    pub fn store(cause: impl fmt::Display) -> ApiError {
        let cause = cause.to_string();
        match storage_fault(&cause) {
            Some(fix) => {
                tracing::error!(%cause, "the store cannot write");
                ApiError::detail(Code::Internal, fix)
            }
            None => ApiError::internal(cause),
        }
    }
}

/// The operator's fix for a store error caused by the data folder's disk,
/// told by SQLite's own messages (the same for every SQLite build).
pub fn storage_fault(cause: &str) -> Option<&'static str> {
    if cause.contains("database or disk is full") || cause.contains("No space left on device") {
        Some(
            "the data folder is full: free space on its disk; writes resume by themselves, reads go on meanwhile",
        )
    } else if cause.contains("readonly database") || cause.contains("Read-only file system") {
        Some(
            "the data folder is read-only: make it writable by the server; writes resume by themselves, reads go on meanwhile",
        )
    } else if cause.contains("disk I/O error") {
        Some("the data folder's disk failed a write (I/O error): check the disk")
    } else {
        None
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> ApiError {
        ApiError::store(format_args!("store: {error}"))
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> ApiError {
        ApiError::internal(format_args!("{error:#}"))
    }
}

impl From<std::io::Error> for ApiError {
    fn from(error: std::io::Error) -> ApiError {
        ApiError::store(format_args!("io: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_number() {
        let mut numbers: Vec<u16> = Code::ALL.iter().map(|c| c.number()).collect();
        numbers.sort();
        numbers.dedup();
        assert_eq!(numbers.len(), Code::ALL.len());
        for code in Code::ALL {
            assert_eq!(Code::from_number(code.number()), Some(code));
        }
    }

    #[test]
    fn detail_follows_the_default_text() {
        let error = ApiError::detail(Code::InvalidTo, "\"12\" is not a phone number");
        assert_eq!(
            error.message(),
            "Invalid \"to\" parameter.: \"12\" is not a phone number"
        );
    }
}
