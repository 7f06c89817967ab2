//! The detectors. For each kind of PII a regular expression finds candidates, then a check in
//! code keeps the real ones: the candidate must stand alone (not be glued to a longer number or
//! word), and pass the kind's own rules (Luhn and issuer prefixes for cards, the SSA's number
//! ranges for SSNs, std's parsers for IP addresses).
//!
//! The patterns are ASCII-only, so the regex crate is built without its Unicode tables.

use regex::{Regex, RegexSet};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A kind of PII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An email address.
    Email,
    /// A phone number, international (`+44 20 7946 0958`) or North American (`(555) 123-4567`).
    Phone,
    /// A payment card number.
    Card,
    /// A US social security number.
    Ssn,
    /// An IPv4 address.
    Ipv4,
    /// An IPv6 address.
    Ipv6,
}

impl Kind {
    /// Every kind, in the order of the configuration table.
    pub const ALL: [Kind; 6] = [
        Kind::Email,
        Kind::Phone,
        Kind::Card,
        Kind::Ssn,
        Kind::Ipv4,
        Kind::Ipv6,
    ];

    /// The configuration key that switches its detector on or off.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Card => "card",
            Kind::Ssn => "ssn",
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
        }
    }

    /// Its label in masks (`[EMAIL]`) and pseudonyms (`[EMAIL:…]`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Phone => "PHONE",
            Kind::Card => "CARD",
            Kind::Ssn => "SSN",
            Kind::Ipv4 => "IPV4",
            Kind::Ipv6 => "IPV6",
        }
    }
}

/// A piece of PII found in a string: its byte range and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Where it starts.
    pub start: usize,
    /// Where it ends (exclusive).
    pub end: usize,
    /// What it is.
    pub kind: Kind,
}

/// Keeps the candidate `start..end` of a text, possibly shortened (the new end), or refuses it.
type Check = fn(&[u8], usize, usize) -> Option<usize>;

struct Pattern {
    kind: Kind,
    regex: Regex,
    check: Check,
    /// After a refused candidate, search again from its second character (`true`: a real match
    /// may start inside it, and matches are short) or after its end.
    retry_inside: bool,
}

/// The enabled detectors, compiled once.
pub struct Detectors {
    /// In priority order: a later pattern's candidate that overlaps an earlier find is refused.
    patterns: Vec<Pattern>,
    /// The same patterns in one automaton: one pass over a string tells which of them match in
    /// it at all, so that most strings (which hold no PII) are scanned once, not once a pattern.
    any: RegexSet,
}

const EMAIL: &str = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,63}";
const IPV6: &str = r"(?:[0-9A-Fa-f]{0,4}:){2,8}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{0,4})";
/// Groups of 4, then 3 to 6 digits, split by spaces or dashes (4-4-4-4, 4-6-5, 4-4-4-4-3), or
/// 13 to 19 digits in one run.
const CARD: &str = r"[0-9]{4}(?:[ -][0-9]{3,6}){2,4}|[0-9]{13,19}";
const SSN: &str = r"[0-9]{3}-[0-9]{2}-[0-9]{4}";
/// `+` and a country code other than 1, then digit groups; the check trims it to 9..=15 digits.
const PHONE_INTERNATIONAL: &str = r"\+[2-9][0-9]{0,2}(?:[ -]?\(0\))?(?:[ -]?[0-9]{1,4}){2,8}";
/// +1 with any separators (or none), `(555) 123-4567`, `555-123-4567`, `555.123.4567`.
const PHONE_NANP: &str = r"\+1[ .-]?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-]?)[0-9]{3}[ .-]?[0-9]{4}|\([2-9][0-9]{2}\)[ .-]?[0-9]{3}[ .-][0-9]{4}|[2-9][0-9]{2}-[0-9]{3}-[0-9]{4}|[2-9][0-9]{2}\.[0-9]{3}\.[0-9]{4}";
const IPV4: &str = r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}";

impl Detectors {
    /// Compiles the detectors of the `enabled` kinds.
    pub fn new(enabled: &[Kind]) -> Self {
        // Priority: an email may hold digits that look like a phone number; an IPv6 address may
        // end in an IPv4 one; a card number is longer than the phone numbers inside it.
        let all: [(Kind, &str, Check, bool); 7] = [
            (Kind::Email, EMAIL, check_email, false),
            (Kind::Ipv6, IPV6, check_ipv6, true),
            (Kind::Card, CARD, check_card, true),
            (Kind::Ssn, SSN, check_ssn, true),
            (
                Kind::Phone,
                PHONE_INTERNATIONAL,
                check_international_phone,
                true,
            ),
            (Kind::Phone, PHONE_NANP, check_nanp_phone, true),
            (Kind::Ipv4, IPV4, check_ipv4, true),
        ];
        let patterns = all
            .into_iter()
            .filter(|(kind, ..)| enabled.contains(kind))
            .map(|(kind, pattern, check, retry_inside)| Pattern {
                kind,
                regex: Regex::new(pattern).expect("the built-in patterns are valid"),
                check,
                retry_inside,
            })
            .collect::<Vec<Pattern>>();
        let any = RegexSet::new(patterns.iter().map(|p| p.regex.as_str()))
            .expect("the built-in patterns are valid");
        Detectors { patterns, any }
    }

    /// Whether no detector is enabled.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Finds the PII in `text`: non-overlapping, in order of position.
    pub fn find(&self, text: &str) -> Vec<Found> {
        let mut found = Vec::new();
        let bytes = text.as_bytes();
        // Every pattern needs an `@`, a digit or a colon; most strings (names, codes,
        // messages) hold none and cost this one cheap pass.
        if !bytes
            .iter()
            .any(|&b| b == b'@' || b == b':' || b.is_ascii_digit())
        {
            return found;
        }
        let matching = self.any.matches(text);
        // Ascending, so in priority order; a pattern that matches nowhere has no candidate.
        for p in matching.iter().map(|index| &self.patterns[index]) {
            // Candidates come in order of position, so one cursor into the earlier finds (in
            // order too) tells whether a candidate overlaps one of them.
            let mut earlier = 0;
            let mut finds = Vec::new();
            let mut from = 0;
            while from < text.len() {
                let Some(m) = p.regex.find_at(text, from) else {
                    break;
                };
                let start = m.start();
                while found.get(earlier).is_some_and(|f: &Found| f.end <= start) {
                    earlier += 1;
                }
                let kept = (p.check)(bytes, start, m.end())
                    .filter(|&end| found.get(earlier).is_none_or(|f| end <= f.start));
                from = match kept {
                    Some(end) => {
                        finds.push(Found {
                            start,
                            end,
                            kind: p.kind,
                        });
                        end
                    }
                    // Every pattern starts with an ASCII character, so `start + 1` is a boundary.
                    None if p.retry_inside => start + 1,
                    None => m.end(),
                };
            }
            if !finds.is_empty() {
                found = merge(found, finds);
            }
        }
        found
    }
}

/// Merges two lists of finds in order of position into one.
fn merge(a: Vec<Found>, b: Vec<Found>) -> Vec<Found> {
    if a.is_empty() {
        return b;
    }
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
        merged.push(
            if x.start < y.start {
                a.next()
            } else {
                b.next()
            }
            .expect("peeked"),
        );
    }
    merged.extend(a.chain(b));
    merged
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether `start..end` stands alone: no letter, digit or `_` right before or after it, and no
/// `joiner` between it and a digit (`2024-555-123-4567`, `1.2.3.4.5`).
fn standalone(text: &[u8], start: usize, end: usize, joiners: &[u8]) -> bool {
    let before = start.checked_sub(1).map(|i| text[i]);
    let after = text.get(end).copied();
    if before.is_some_and(is_word) || after.is_some_and(is_word) {
        return false;
    }
    let digit_at = |i: Option<usize>| i.and_then(|i| text.get(i)).is_some_and(u8::is_ascii_digit);
    if before.is_some_and(|b| joiners.contains(&b)) && digit_at(start.checked_sub(2)) {
        return false;
    }
    !(after.is_some_and(|b| joiners.contains(&b)) && digit_at(Some(end + 1)))
}

/// What glues digits into one longer number: dates, ranges, decimals, times.
const NUMBER_JOINERS: &[u8] = b".-:";

/// File names such as `logo@2x.png` have the shape of an email address.
const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "bmp", "tif", "tiff", "css", "js",
];

fn check_email(text: &[u8], start: usize, end: usize) -> Option<usize> {
    let at = start + text[start..end].iter().position(|&b| b == b'@')?;
    let tld = &text[end - text[..end].iter().rev().position(|&b| b == b'.')?..end];
    let ok = at - start <= 64
        && end - start <= 254
        && !text.get(end).copied().is_some_and(is_word)
        && !FILE_EXTENSIONS
            .iter()
            .any(|e| e.as_bytes().eq_ignore_ascii_case(tld));
    ok.then_some(end)
}

fn check_ipv6(text: &[u8], start: usize, end: usize) -> Option<usize> {
    let candidate = std::str::from_utf8(&text[start..end]).ok()?;
    let before = start.checked_sub(1).map(|i| text[i]);
    let after = text.get(end).copied();
    let glued = before.is_some_and(|b| is_word(b) || b == b':' || b == b'.')
        || after.is_some_and(|b| is_word(b) || b == b':')
        || (after == Some(b'.') && text.get(end + 1).is_some_and(u8::is_ascii_digit));
    // `::` alone is valid (the unspecified address) but is far more often a path separator.
    let has_digit = candidate.bytes().any(|b| b.is_ascii_hexdigit());
    (!glued && has_digit && candidate.parse::<Ipv6Addr>().is_ok()).then_some(end)
}

/// The ends of the digit groups of `start..end`, longest first: where a grouped number may be
/// cut when the whole is too long or glued to what follows.
fn group_ends(text: &[u8], start: usize, end: usize) -> impl Iterator<Item = usize> + '_ {
    (start + 1..=end)
        .rev()
        .filter(move |&i| text[i - 1].is_ascii_digit() && (i == end || !text[i].is_ascii_digit()))
}

fn digits(text: &[u8]) -> impl Iterator<Item = u8> + '_ {
    text.iter().copied().filter(u8::is_ascii_digit)
}

fn check_card(text: &[u8], start: usize, end: usize) -> Option<usize> {
    let mut separators = text[start..end].iter().filter(|b| !b.is_ascii_digit());
    if let Some(first) = separators.next()
        && !separators.all(|b| b == first)
    {
        return None;
    }
    group_ends(text, start, end).find(|&end| {
        let number: Vec<u8> = digits(&text[start..end]).map(|d| d - b'0').collect();
        (13..=19).contains(&number.len())
            && standalone(text, start, end, NUMBER_JOINERS)
            && plausible_issuer(&number)
            && luhn(&number)
    })
}

/// The Luhn checksum of a card number's digits (as values 0 to 9).
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                if d > 4 { 2 * d - 9 } else { 2 * d }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether the number starts like a card of a major network and has a length that network
/// issues: Visa, Mastercard, American Express, Discover, Diners, JCB, UnionPay, Maestro.
/// Epoch timestamps (which start with 1 until 2033) and most ids do not.
fn plausible_issuer(digits: &[u8]) -> bool {
    let prefix = |n: usize| {
        digits[..n]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let len = digits.len();
    match digits[0] {
        4 => matches!(len, 13 | 16 | 19),
        2 => (2221..=2720).contains(&prefix(4)) && len == 16,
        3 => match prefix(2) {
            34 | 37 => len == 15,
            36 | 38 | 39 => (14..=19).contains(&len),
            30 => (300..=305).contains(&prefix(3)) && (14..=19).contains(&len),
            35 => (3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len),
            _ => false,
        },
        5 => match prefix(2) {
            51..=55 => len == 16,
            50 | 56..=59 => (13..=19).contains(&len), // Maestro
            _ => false,
        },
        6 => (13..=19).contains(&len), // Discover, UnionPay, Maestro
        _ => false,
    }
}

fn check_ssn(text: &[u8], start: usize, end: usize) -> Option<usize> {
    let number = |range: std::ops::Range<usize>| {
        text[start + range.start..start + range.end]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'))
    };
    let (area, group, serial) = (number(0..3), number(4..6), number(7..11));
    let valid = area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
    (valid && standalone(text, start, end, NUMBER_JOINERS)).then_some(end)
}

fn check_international_phone(text: &[u8], start: usize, end: usize) -> Option<usize> {
    group_ends(text, start, end).find(|&end| {
        let count = digits(&text[start..end]).count() - trunk_zero(&text[start..end]);
        (9..=15).contains(&count) && standalone(text, start, end, NUMBER_JOINERS)
    })
}

/// 1 if the number holds the `(0)` of a national trunk prefix, as in `+44 (0)20`.
fn trunk_zero(number: &[u8]) -> usize {
    usize::from(number.windows(3).any(|w| w == b"(0)"))
}

fn check_nanp_phone(text: &[u8], start: usize, end: usize) -> Option<usize> {
    standalone(text, start, end, NUMBER_JOINERS).then_some(end)
}

fn check_ipv4(text: &[u8], start: usize, end: usize) -> Option<usize> {
    let candidate = std::str::from_utf8(&text[start..end]).ok()?;
    // A port (`:8080`) or a prefix length (`/24`) may follow; another `.digit` may not.
    (standalone(text, start, end, b".") && candidate.parse::<Ipv4Addr>().is_ok()).then_some(end)
}

/// The form of a find that is hashed, so that one value written in different ways gets one
/// pseudonym: emails lower-cased; phone numbers as `+` and digits (`+1` added to North American
/// numbers written without it, the `(0)` trunk prefix removed); card numbers and SSNs as digits;
/// IP addresses as std prints them (IPv6 compressed, lower case).
pub fn canonical(kind: Kind, text: &str) -> String {
    let only_digits = |t: &str| t.chars().filter(char::is_ascii_digit).collect::<String>();
    match kind {
        Kind::Email => text.to_ascii_lowercase(),
        Kind::Phone => {
            let digits = only_digits(&text.replace("(0)", ""));
            if text.starts_with('+') {
                format!("+{digits}")
            } else {
                format!("+1{digits}")
            }
        }
        Kind::Card | Kind::Ssn => only_digits(text),
        Kind::Ipv4 => text
            .parse::<Ipv4Addr>()
            .map_or_else(|_| text.to_string(), |a| a.to_string()),
        Kind::Ipv6 => text
            .parse::<Ipv6Addr>()
            .map_or_else(|_| text.to_string(), |a| a.to_string()),
    }
}
