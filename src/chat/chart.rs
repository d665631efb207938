//! The chart `!mailroom stats` uploads: tickets received per day as bars,
//! the day's median first response as a line, drawn server-side into a PNG.
//!
//! Drawn by hand into an RGB buffer and written as PNG with the deflate
//! and CRC code already in the dependency tree: a chart library would
//! bring a font stack (fontconfig, or a bundled font) for text this chart
//! does without — the scales and legend are in the message beside it.

use std::io::Write;

use crate::domain::analytics::DayFigures;

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 320;
const MARGIN: u32 = 24;

type Rgb = [u8; 3];
const BACKGROUND: Rgb = [255, 255, 255];
const GRID: Rgb = [226, 230, 236];
const AXIS: Rgb = [90, 98, 110];
/// Received per day.
pub const BAR: Rgb = [66, 133, 244];
/// Median first response per day.
pub const LINE: Rgb = [234, 120, 30];

struct Canvas {
    pixels: Vec<u8>,
}

impl Canvas {
    fn new() -> Canvas {
        Canvas {
            pixels: BACKGROUND.repeat((WIDTH * HEIGHT) as usize),
        }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if (0..WIDTH as i64).contains(&x) && (0..HEIGHT as i64).contains(&y) {
            let i = (y as usize * WIDTH as usize + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
                self.set(x, y, c);
            }
        }
    }

    /// A line two pixels thick (Bresenham, doubled downwards).
    fn line(&mut self, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.set(x0, y0, c);
            self.set(x0, y0 + 1, c);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }
}

/// The chart of `days` as a PNG, [`WIDTH`] × [`HEIGHT`]. Bars are scaled to
/// the busiest day, the line to the slowest median; four grid lines split
/// both scales in quarters.
pub fn render(days: &[DayFigures]) -> Vec<u8> {
    let mut c = Canvas::new();
    let (left, right) = (MARGIN as i64, (WIDTH - MARGIN) as i64);
    let (top, bottom) = (MARGIN as i64, (HEIGHT - MARGIN) as i64);
    let plot_h = bottom - top;
    for q in 0..=4 {
        let y = top + plot_h * q / 4;
        c.rect(left, y, right, y, GRID);
    }
    let n = days.len().max(1) as i64;
    let slot = (right - left) / n;
    let most = days.iter().map(|d| d.received).max().unwrap_or(0).max(1) as i64;
    let slowest = days
        .iter()
        .filter_map(|d| d.first_response_median_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut points = Vec::new();
    for (i, d) in days.iter().enumerate() {
        let x0 = left + slot * i as i64;
        let centre = x0 + slot / 2;
        if d.received > 0 {
            let h = (plot_h * d.received as i64 / most).max(1);
            let pad = (slot / 6).max(1);
            c.rect(x0 + pad, bottom - h, x0 + slot - pad, bottom, BAR);
        }
        if let Some(ms) = d.first_response_median_ms {
            let y = bottom - (plot_h as i128 * ms as i128 / slowest as i128) as i64;
            points.push((centre, y));
        }
    }
    for pair in points.windows(2) {
        c.line(pair[0], pair[1], LINE);
    }
    for (x, y) in &points {
        c.rect(x - 3, y - 3, x + 3, y + 3, LINE);
    }
    c.rect(left, top, left, bottom, AXIS);
    c.rect(left, bottom, right, bottom, AXIS);
    png(WIDTH, HEIGHT, &c.pixels)
}

/// An 8-bit RGB PNG: signature, IHDR, one zlib IDAT of unfiltered
/// scanlines, IEND.
fn png(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, adaptive filters, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let row = width as usize * 3;
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for line in rgb.chunks(row) {
        raw.push(0); // filter: none
        raw.extend_from_slice(line);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = z.write_all(&raw);
    let idat = z.finish().unwrap_or_default();
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// Reads back what [`render`] wrote: width, height and the RGB pixels, or
/// why not. For tests and checks; accepts only the form written here
/// (8-bit RGB, filter none), and checks every chunk's CRC.
pub fn decode(png: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    use std::io::Read;
    let mut rest = png
        .strip_prefix(b"\x89PNG\r\n\x1a\n")
        .ok_or("no PNG signature")?;
    let (mut size, mut idat) = (None, Vec::new());
    while rest.len() >= 12 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let body = rest.get(4..8 + len).ok_or("a chunk runs past the end")?;
        let crc = rest.get(8 + len..12 + len).ok_or("a chunk has no CRC")?;
        if crc32fast::hash(body).to_be_bytes() != crc {
            return Err(format!(
                "bad CRC on {:?}",
                String::from_utf8_lossy(&body[..4])
            ));
        }
        let (kind, data) = body.split_at(4);
        match kind {
            b"IHDR" if data.len() == 13 => {
                if data[8..10] != [8, 2] {
                    return Err("not 8-bit RGB".into());
                }
                let w = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let h = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                size = Some((w, h));
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        rest = &rest[12 + len..];
    }
    let (w, h) = size.ok_or("no IHDR")?;
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .map_err(|e| format!("IDAT: {e}"))?;
    let row = w as usize * 3;
    if raw.len() != (row + 1) * h as usize {
        return Err(format!("{} bytes of scanlines for {w}×{h}", raw.len()));
    }
    let mut pixels = Vec::with_capacity(row * h as usize);
    for line in raw.chunks(row + 1) {
        if line[0] != 0 {
            return Err("a filtered scanline".into());
        }
        pixels.extend_from_slice(&line[1..]);
    }
    Ok((w, h, pixels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::analytics::Day;

    fn day(received: u64, median_min: Option<i64>) -> DayFigures {
        let date = jiff::civil::date(2026, 3, 23);
        DayFigures {
            day: Day {
                date,
                start_ms: 0,
                end_ms: 1,
            },
            received,
            first_response_median_ms: median_min.map(|m| m * 60_000),
        }
    }

    #[test]
    fn the_chart_is_a_png_of_its_size_with_bars_and_a_line() {
        let days = [
            day(1, Some(120)),
            day(0, None),
            day(4, Some(30)),
            day(2, Some(360)),
        ];
        let png = render(&days);
        let (w, h, pixels) = decode(&png).unwrap();
        assert_eq!((w, h), (WIDTH, HEIGHT));
        let at = |x: u32, y: u32| {
            let i = ((y * WIDTH + x) * 3) as usize;
            [pixels[i], pixels[i + 1], pixels[i + 2]]
        };
        let slot = (WIDTH - 2 * MARGIN) / 4;
        let bottom = HEIGHT - MARGIN - 1;
        // The third day is the busiest: its bar reaches the top grid line.
        assert_eq!(at(MARGIN + 2 * slot + slot / 3, MARGIN + 1), BAR);
        // The second day has no bar.
        assert_eq!(at(MARGIN + slot + slot / 2, bottom - 2), BACKGROUND);
        // The slowest median (the fourth day) sits on the top line.
        assert_eq!(at(MARGIN + 3 * slot + slot / 2, MARGIN), LINE);
        assert!(decode(b"nope").is_err());
        let mut broken = png.clone();
        let last = broken.len() - 20;
        broken[last] ^= 0xff;
        assert!(decode(&broken).is_err(), "a flipped byte fails its CRC");
    }

    #[test]
    fn an_empty_period_still_draws() {
        let (w, h, _) = decode(&render(&[])).unwrap();
        assert_eq!((w, h), (WIDTH, HEIGHT));
    }
}
