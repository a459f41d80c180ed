//! Fitting an image to a carrier's largest MMS (spec section 7): an image
//! over the limit is scaled down and re-encoded in its own format (JPEG,
//! PNG or GIF) until it fits. The stored original is never changed; the
//! fitted bytes are made for one submission.
//!
//! Decoding is bounded ([`image::Limits`]): an image that declares huge
//! dimensions in a tiny file (a decompression bomb) is refused before any
//! pixel is allocated. Audio and video cannot be shrunk without a
//! transcoder, which this build does not include: they fit or they fail.
//! An animated GIF keeps only its first frame once it has to be scaled.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// The widest and tallest image decoded.
pub const MAX_DIMENSION: u32 = 10_000;
/// The most memory a decoder may take.
pub const MAX_ALLOC: u64 = 256 * 1024 * 1024;
/// Each step scales both sides to this share of the last step's.
const STEP: f64 = 0.75;
/// Below this many pixels on the longer side an image is not worth sending.
const MIN_SIDE: u32 = 16;

/// An image that fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    pub bytes: Vec<u8>,
    /// `image/jpeg`, `image/png` or `image/gif`.
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
    /// False when the original fitted as it was.
    pub scaled: bool,
}

/// Why an image cannot be fitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    #[error("the image is not a JPEG, PNG or GIF that can be decoded: {0}")]
    Undecodable(String),
    #[error(
        "the image declares {width}x{height} pixels, over the {MAX_DIMENSION}x{MAX_DIMENSION} (or {MAX_ALLOC} bytes of memory) this server decodes: upload a smaller image"
    )]
    TooManyPixels { width: u32, height: u32 },
    #[error(
        "the image cannot be made smaller than {max_bytes} bytes, the carrier's MMS limit, without becoming unreadable: send a smaller image"
    )]
    CannotFit { max_bytes: usize },
}

/// `original` as it is when it fits in `max_bytes` (0: no limit), else
/// scaled down and re-encoded until it does.
pub fn fit_image(original: &[u8], max_bytes: usize) -> Result<Fitted, FitError> {
    let mut reader = ImageReader::new(Cursor::new(original))
        .with_guessed_format()
        .map_err(|e| FitError::Undecodable(e.to_string()))?;
    let format = reader
        .format()
        .ok_or_else(|| FitError::Undecodable("unknown format".into()))?;
    let mime = match format {
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Png => "image/png",
        ImageFormat::Gif => "image/gif",
        other => return Err(FitError::Undecodable(format!("{other:?} is not accepted"))),
    };
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| FitError::Undecodable(e.to_string()))?;
    if max_bytes == 0 || original.len() <= max_bytes {
        return Ok(Fitted {
            bytes: original.to_vec(),
            mime,
            width,
            height,
            scaled: false,
        });
    }
    if width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(FitError::TooManyPixels { width, height });
    }
    reader = ImageReader::new(Cursor::new(original))
        .with_guessed_format()
        .map_err(|e| FitError::Undecodable(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => FitError::TooManyPixels { width, height },
        other => FitError::Undecodable(other.to_string()),
    })?;
    // JPEG first tries a lower quality at full size: often enough, and
    // sharper than scaling.
    if format == ImageFormat::Jpeg {
        let bytes = encode(&image, format, 70)?;
        if bytes.len() <= max_bytes {
            return Ok(fitted(bytes, mime, &image));
        }
    }
    // Start from the scale the byte ratio suggests, then step down.
    let ratio = (max_bytes as f64 / original.len() as f64).sqrt().min(STEP);
    let mut scale = ratio;
    loop {
        let w = ((width as f64 * scale).round() as u32).max(1);
        let h = ((height as f64 * scale).round() as u32).max(1);
        if w.max(h) < MIN_SIDE {
            return Err(FitError::CannotFit { max_bytes });
        }
        let smaller = image.resize(w, h, image::imageops::FilterType::Triangle);
        let bytes = encode(&smaller, format, 70)?;
        if bytes.len() <= max_bytes {
            return Ok(fitted(bytes, mime, &smaller));
        }
        scale *= STEP;
    }
}

fn fitted(bytes: Vec<u8>, mime: &'static str, image: &DynamicImage) -> Fitted {
    Fitted {
        bytes,
        mime,
        width: image.width(),
        height: image.height(),
        scaled: true,
    }
}

fn encode(image: &DynamicImage, format: ImageFormat, quality: u8) -> Result<Vec<u8>, FitError> {
    let mut out = Vec::new();
    let failed = |e: image::ImageError| FitError::Undecodable(e.to_string());
    match format {
        ImageFormat::Jpeg => {
            // JPEG has no alpha channel.
            let rgb = image.to_rgb8();
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
            rgb.write_with_encoder(encoder).map_err(failed)?;
        }
        ImageFormat::Png => {
            let encoder = image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Best,
                image::codecs::png::FilterType::Adaptive,
            );
            image.write_with_encoder(encoder).map_err(failed)?;
        }
        _ => {
            let rgba = image.to_rgba8();
            let mut encoder = image::codecs::gif::GifEncoder::new_with_speed(&mut out, 10);
            encoder
                .encode_frame(image::Frame::new(rgba))
                .map_err(failed)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    /// A noisy photo-like image: compresses badly, as photos do.
    fn noisy(width: u32, height: u32) -> RgbImage {
        let mut seed = 12345u32;
        RgbImage::from_fn(width, height, |x, y| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let n = (seed >> 24) as u8;
            Rgb([
                (x % 256) as u8 ^ n,
                (y % 256) as u8,
                n.wrapping_add((x + y) as u8),
            ])
        })
    }

    fn encoded(format: ImageFormat, width: u32, height: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(noisy(width, height))
            .write_to(&mut out, format)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn an_image_that_fits_is_left_alone() {
        let png = encoded(ImageFormat::Png, 20, 20);
        let fitted = fit_image(&png, png.len()).unwrap();
        assert!(!fitted.scaled);
        assert_eq!(fitted.bytes, png);
        assert_eq!((fitted.width, fitted.height), (20, 20));
    }

    #[test]
    fn each_format_is_scaled_down_to_fit_and_stays_its_format() {
        for (format, mime) in [
            (ImageFormat::Jpeg, "image/jpeg"),
            (ImageFormat::Png, "image/png"),
            (ImageFormat::Gif, "image/gif"),
        ] {
            let original = encoded(format, 400, 300);
            let max = original.len() / 3;
            let fitted = fit_image(&original, max).unwrap();
            assert!(fitted.scaled, "{mime}");
            assert!(
                fitted.bytes.len() <= max,
                "{mime}: {} > {max}",
                fitted.bytes.len()
            );
            assert_eq!(fitted.mime, mime);
            assert_eq!(image::guess_format(&fitted.bytes).unwrap(), format);
            let decoded = image::load_from_memory(&fitted.bytes).unwrap();
            assert_eq!(
                (decoded.width(), decoded.height()),
                (fitted.width, fitted.height)
            );
            assert!(fitted.width < 400 && fitted.height < 300, "{mime}");
            // The aspect ratio is kept.
            let ratio = fitted.width as f64 / fitted.height as f64;
            assert!((ratio - 4.0 / 3.0).abs() < 0.1, "{mime}: {ratio}");
        }
    }

    #[test]
    fn a_limit_no_image_can_meet_is_refused() {
        let png = encoded(ImageFormat::Png, 100, 100);
        assert_eq!(
            fit_image(&png, 10),
            Err(FitError::CannotFit { max_bytes: 10 })
        );
    }

    /// CRC-32 of PNG chunks (ISO 3309), to write a valid header by hand.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_bomb_declaring_huge_dimensions_is_refused_before_decoding() {
        // A 1x1 PNG whose header (with a valid CRC) declares 100000x100000.
        let mut png = encoded(ImageFormat::Png, 1, 1);
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            fit_image(&png, 10),
            Err(FitError::TooManyPixels {
                width: 100_000,
                height: 100_000
            })
        );
        // A GIF declaring a 60000x60000 screen.
        let mut gif = encoded(ImageFormat::Gif, 2, 2);
        gif[6..8].copy_from_slice(&60_000u16.to_le_bytes());
        gif[8..10].copy_from_slice(&60_000u16.to_le_bytes());
        assert!(matches!(
            fit_image(&gif, 10),
            Err(FitError::TooManyPixels { .. })
        ));
    }

    #[test]
    fn bytes_that_are_no_image_are_undecodable() {
        assert!(matches!(
            fit_image(b"ID3 not an image", 10),
            Err(FitError::Undecodable(_))
        ));
    }
}
