//! Recognising media by its first bytes (spec section 5.6): images (JPEG,
//! PNG, GIF), audio (MP3, AMR, AAC/M4A, WAV) and video (MP4, 3GP, QuickTime).
//! The uploaded name and any declared content type are never consulted, so a
//! smart URL only ever serves one of these formats.
//!
//! `infer` covers the images and WAV. The rest is checked here: infer only
//! knows one of MP3's frame-sync patterns, misses AMR-WB and 3GP, and reads
//! ISO base media files (`ftyp` brands) loosely.

use std::fmt;

/// How many leading bytes [`sniff`] needs to decide.
pub const SNIFF_BYTES: usize = 64;

/// The three media types of `media.upload`'s `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    Audio,
    Video,
}

impl Kind {
    /// `image`, `audio` or `video`; `None` for anything else.
    pub fn parse(value: &str) -> Option<Kind> {
        match value {
            "image" => Some(Kind::Image),
            "audio" => Some(Kind::Audio),
            "video" => Some(Kind::Video),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recognised format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    pub kind: Kind,
    /// The `Content-Type` the smart URL serves.
    pub mime: &'static str,
}

const fn found(kind: Kind, mime: &'static str) -> Option<Sniffed> {
    Some(Sniffed { kind, mime })
}

/// The format of a file starting with `head`, `None` when it is not one
/// this server accepts.
pub fn sniff(head: &[u8]) -> Option<Sniffed> {
    if let Some(sniffed) = iso_media(head) {
        return Some(sniffed);
    }
    if infer::image::is_jpeg(head) {
        return found(Kind::Image, "image/jpeg");
    }
    if infer::image::is_png(head) {
        return found(Kind::Image, "image/png");
    }
    if infer::image::is_gif(head) {
        return found(Kind::Image, "image/gif");
    }
    if infer::audio::is_wav(head) {
        return found(Kind::Audio, "audio/wav");
    }
    // Both AMR-NB (`#!AMR\n`) and AMR-WB (`#!AMR-WB\n`).
    if head.starts_with(b"#!AMR") {
        return found(Kind::Audio, "audio/amr");
    }
    if head.starts_with(b"ID3") || is_mpeg_audio_frame(head) {
        return found(Kind::Audio, "audio/mpeg");
    }
    if is_adts_frame(head) {
        return found(Kind::Audio, "audio/aac");
    }
    None
}

/// An MPEG-1/2/2.5 Layer III frame header: 11 sync bits, a valid version,
/// layer III, and a bitrate and sample rate that are not "bad"/reserved.
fn is_mpeg_audio_frame(head: &[u8]) -> bool {
    let [a, b, c, ..] = *head else {
        return false;
    };
    let sync = a == 0xFF && b & 0xE0 == 0xE0;
    let version_ok = (b >> 3) & 0b11 != 0b01;
    let layer_three = (b >> 1) & 0b11 == 0b01;
    let bitrate_ok = c >> 4 != 0b1111;
    let rate_ok = (c >> 2) & 0b11 != 0b11;
    sync && version_ok && layer_three && bitrate_ok && rate_ok
}

/// An ADTS (raw AAC) frame header: 12 sync bits, layer 00, a valid
/// sampling-frequency index.
fn is_adts_frame(head: &[u8]) -> bool {
    let [a, b, c, ..] = *head else {
        return false;
    };
    a == 0xFF && b & 0xF6 == 0xF0 && (c >> 2) & 0x0F < 13
}

/// ISO base media files (MP4, M4A, 3GP, QuickTime): an `ftyp` box first,
/// decided by its major brand, then by its compatible brands. Old
/// QuickTime files without `ftyp` start with another top-level atom.
fn iso_media(head: &[u8]) -> Option<Sniffed> {
    if head.len() < 12 {
        return None;
    }
    let box_type = &head[4..8];
    if box_type != b"ftyp" {
        // A leading zero byte (an atom under 16 MB) keeps text that happens
        // to carry an atom name at offset 4 out.
        return match box_type {
            b"moov" | b"mdat" | b"wide" | b"free" | b"skip" | b"pnot" if head[0] == 0 => {
                found(Kind::Video, "video/quicktime")
            }
            _ => None,
        };
    }
    let box_size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let end = box_size.clamp(16, head.len());
    let major = &head[8..12];
    // Compatible brands follow the 4-byte minor version.
    let compatible = head.get(16..end).unwrap_or(&[]).chunks_exact(4);
    std::iter::once(major).chain(compatible).find_map(brand)
}

fn brand(brand: &[u8]) -> Option<Sniffed> {
    match brand {
        b"qt  " => found(Kind::Video, "video/quicktime"),
        b"M4A " | b"M4B " | b"M4P " | b"F4A " => found(Kind::Audio, "audio/mp4"),
        [b'3', b'g', b'2', _] => found(Kind::Video, "video/3gpp2"),
        [b'3', b'g', _, _] => found(Kind::Video, "video/3gpp"),
        b"isom" | b"iso2" | b"iso3" | b"iso4" | b"iso5" | b"iso6" | b"mp41" | b"mp42" | b"avc1"
        | b"M4V " | b"M4VH" | b"M4VP" | b"MSNV" | b"mmp4" | b"dash" | b"F4V " => {
            found(Kind::Video, "video/mp4")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compatible.len();
        let mut bytes = (size as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"ftyp");
        bytes.extend_from_slice(major);
        bytes.extend_from_slice(&[0, 0, 2, 0]);
        for brand in compatible {
            bytes.extend_from_slice(*brand);
        }
        bytes.extend_from_slice(&[0, 0, 0, 8, b'm', b'd', b'a', b't']);
        bytes
    }

    fn kind_and_mime(bytes: &[u8]) -> Option<(Kind, &'static str)> {
        sniff(bytes).map(|s| (s.kind, s.mime))
    }

    #[test]
    fn images_are_recognised() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
        assert_eq!(kind_and_mime(&png), Some((Kind::Image, "image/png")));
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0];
        assert_eq!(kind_and_mime(&jpeg), Some((Kind::Image, "image/jpeg")));
        assert_eq!(
            kind_and_mime(b"GIF89a\x01\x00\x01\x00"),
            Some((Kind::Image, "image/gif"))
        );
        assert_eq!(
            kind_and_mime(b"GIF87a\x01\x00\x01\x00"),
            Some((Kind::Image, "image/gif"))
        );
    }

    #[test]
    fn audio_formats_are_recognised() {
        let wav = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00";
        assert_eq!(kind_and_mime(wav), Some((Kind::Audio, "audio/wav")));
        assert_eq!(
            kind_and_mime(b"#!AMR\n\x3c"),
            Some((Kind::Audio, "audio/amr"))
        );
        assert_eq!(
            kind_and_mime(b"#!AMR-WB\n"),
            Some((Kind::Audio, "audio/amr"))
        );
        assert_eq!(
            kind_and_mime(b"ID3\x04\x00\x00\x00\x00\x00\x00"),
            Some((Kind::Audio, "audio/mpeg"))
        );
        // MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, with and without CRC.
        for frame in [[0xFF, 0xFB, 0x90, 0x64], [0xFF, 0xFA, 0x90, 0x64]] {
            assert_eq!(kind_and_mime(&frame), Some((Kind::Audio, "audio/mpeg")));
        }
        // MPEG-2 Layer III, 64 kbit/s, 22.05 kHz.
        assert_eq!(
            kind_and_mime(&[0xFF, 0xF3, 0x80, 0xC4]),
            Some((Kind::Audio, "audio/mpeg"))
        );
        // ADTS AAC-LC, 44.1 kHz.
        assert_eq!(
            kind_and_mime(&[0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC]),
            Some((Kind::Audio, "audio/aac"))
        );
        assert_eq!(
            kind_and_mime(&ftyp(b"M4A ", &[b"M4A ", b"mp42", b"isom"])),
            Some((Kind::Audio, "audio/mp4"))
        );
    }

    #[test]
    fn video_formats_are_recognised_by_ftyp_brand() {
        assert_eq!(
            kind_and_mime(&ftyp(b"isom", &[b"isom", b"iso2", b"mp41"])),
            Some((Kind::Video, "video/mp4"))
        );
        assert_eq!(
            kind_and_mime(&ftyp(b"3gp5", &[b"3gp5", b"isom"])),
            Some((Kind::Video, "video/3gpp"))
        );
        assert_eq!(
            kind_and_mime(&ftyp(b"3g2a", &[])),
            Some((Kind::Video, "video/3gpp2"))
        );
        assert_eq!(
            kind_and_mime(&ftyp(b"qt  ", &[b"qt  "])),
            Some((Kind::Video, "video/quicktime"))
        );
        // An unknown major brand decided by a compatible one.
        assert_eq!(
            kind_and_mime(&ftyp(b"XAVC", &[b"XAVC", b"mp42"])),
            Some((Kind::Video, "video/mp4"))
        );
        let old_quicktime = [0, 0, 0, 8, b'w', b'i', b'd', b'e', 0, 0, 0, 8, b'm', b'd'];
        assert_eq!(
            kind_and_mime(&old_quicktime),
            Some((Kind::Video, "video/quicktime"))
        );
    }

    #[test]
    fn other_bytes_are_refused() {
        for bytes in [
            &b""[..],
            b"hello, world\n",
            b"%PDF-1.7\n",
            b"PK\x03\x04\x14\x00\x00\x00",
            b"OggS\x00\x02\x00\x00\x00\x00\x00\x00",
            b"RIFF\x24\x00\x00\x00WEBPVP8 ",
            b"textfree text",
            // An HEIF image is an ftyp file of a brand this server does not take.
            &ftyp(b"heic", &[b"mif1", b"heic"]),
            // A frame sync with a reserved MPEG version, or layer I.
            &[0xFF, 0xEB, 0x90, 0x64],
            &[0xFF, 0xFF, 0x90, 0x64],
            &[0xFF, 0xD8],
        ] {
            assert_eq!(sniff(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn declared_types_parse() {
        assert_eq!(Kind::parse("image"), Some(Kind::Image));
        assert_eq!(Kind::parse("video"), Some(Kind::Video));
        assert_eq!(Kind::parse("Image"), None);
        assert_eq!(Kind::parse("text"), None);
        assert_eq!(Kind::Audio.to_string(), "audio");
    }
}
