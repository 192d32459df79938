//! A small PDF writer for printable reports: headings, wrapped paragraphs
//! and tables on A4 pages, in the PDF standard fonts (Helvetica and
//! Courier, which every reader has, so nothing is embedded).

/// Page size (A4) and margins, in points.
const W: f64 = 595.0;
const H: f64 = 842.0;
const MARGIN: f64 = 50.0;

/// Helvetica's advance widths (1/1000 em) for ASCII 32..=126.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

/// A font of the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Font {
    /// Helvetica.
    Regular,
    /// Helvetica-Bold.
    Bold,
    /// Courier (hashes, ids).
    Mono,
}

impl Font {
    fn resource(self) -> &'static str {
        match self {
            Font::Regular => "F1",
            Font::Bold => "F2",
            Font::Mono => "F3",
        }
    }
}

/// A character as WinAnsiEncoding has it (`?` when it has none).
fn win_ansi(c: char) -> u8 {
    match c {
        ' '..='~' => c as u8,
        '\u{a0}'..='\u{ff}' => c as u32 as u8,
        '\u{2013}' => 0x96,
        '\u{2014}' => 0x97,
        '\u{2018}' => 0x91,
        '\u{2019}' => 0x92,
        '\u{201c}' => 0x93,
        '\u{201d}' => 0x94,
        '\u{2022}' => 0x95,
        '\u{2026}' => 0x85,
        '\u{2192}' => b'>',
        _ => b'?',
    }
}

/// Width of `text` at `size` points.
pub fn text_width(text: &str, font: Font, size: f64) -> f64 {
    let em: f64 = text
        .chars()
        .map(|c| match font {
            Font::Mono => 600.0,
            _ => {
                let b = win_ansi(c);
                let w = if (32..=126).contains(&b) {
                    f64::from(HELVETICA[usize::from(b - 32)])
                } else {
                    556.0
                };
                // Bold runs about 7% wider: estimate high, never overflow.
                if font == Font::Bold {
                    w * 1.07
                } else {
                    w
                }
            }
        })
        .sum();
    em * size / 1000.0
}

/// Breaks `text` into lines no wider than `width` (a word longer than a
/// line is broken inside).
pub fn wrap(text: &str, font: Font, size: f64, width: f64) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split(' ') {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if text_width(&candidate, font, size) <= width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let mut piece = String::new();
            for c in word.chars() {
                piece.push(c);
                if text_width(&piece, font, size) > width {
                    piece.pop();
                    lines.push(std::mem::take(&mut piece));
                    piece.push(c);
                }
            }
            line = piece;
        }
        lines.push(line);
    }
    lines
}

fn escape(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for c in text.chars() {
        let b = win_ansi(c);
        if matches!(b, b'(' | b')' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// A document being written, page by page.
pub struct Document {
    pages: Vec<Vec<u8>>,
    current: Vec<u8>,
    y: f64,
    title: String,
    footer: String,
}

impl Document {
    /// A new document; `footer` is printed at the foot of every page with
    /// the page number.
    pub fn new(title: &str, footer: &str) -> Self {
        Self {
            pages: Vec::new(),
            current: Vec::new(),
            y: H - MARGIN,
            title: title.to_owned(),
            footer: footer.to_owned(),
        }
    }

    fn text_at(&mut self, x: f64, y: f64, font: Font, size: f64, text: &str) {
        self.current.extend_from_slice(
            format!("BT /{} {size} Tf {x:.2} {y:.2} Td (", font.resource()).as_bytes(),
        );
        self.current.extend(escape(text));
        self.current.extend_from_slice(b") Tj ET\n");
    }

    fn new_page(&mut self) {
        let done = std::mem::take(&mut self.current);
        self.pages.push(done);
        self.y = H - MARGIN;
    }

    /// Starts a new page unless `height` points still fit on this one.
    fn room(&mut self, height: f64) {
        if self.y - height < MARGIN + 20.0 {
            self.new_page();
        }
    }

    /// Vertical space.
    pub fn space(&mut self, points: f64) {
        self.y -= points;
    }

    /// A line of text in `font` at `size`, wrapped to the page.
    pub fn text(&mut self, text: &str, font: Font, size: f64) {
        let lead = size * 1.3;
        for line in wrap(text, font, size, W - 2.0 * MARGIN) {
            self.room(lead);
            self.y -= lead;
            self.text_at(MARGIN, self.y, font, size, &line);
        }
    }

    /// A heading.
    pub fn heading(&mut self, text: &str, size: f64) {
        self.room(size * 3.0);
        self.space(size * 0.6);
        self.text(text, Font::Bold, size);
        self.space(size * 0.2);
    }

    /// A table: a bold header row, then rows; columns share the width in
    /// proportion to `weights`, and cells wrap within their column.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>], weights: &[f64]) {
        let size = 8.5;
        let lead = size * 1.25;
        let total: f64 = weights.iter().sum();
        let widths: Vec<f64> = weights
            .iter()
            .map(|w| (W - 2.0 * MARGIN) * w / total)
            .collect();
        let head: Vec<String> = header.iter().map(|s| (*s).to_owned()).collect();
        for (i, row) in std::iter::once(&head).chain(rows).enumerate() {
            let font = if i == 0 { Font::Bold } else { Font::Regular };
            let cells: Vec<Vec<String>> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| wrap(c, font, size, w - 6.0))
                .collect();
            let lines = cells.iter().map(Vec::len).max().unwrap_or(1);
            let height = lines as f64 * lead + 4.0;
            self.room(height);
            let mut x = MARGIN;
            for (cell, w) in cells.iter().zip(&widths) {
                for (k, line) in cell.iter().enumerate() {
                    let y = self.y - lead * (k as f64 + 1.0);
                    self.text_at(x + 2.0, y, font, size, line);
                }
                x += w;
            }
            self.y -= height;
            let rule = format!(
                "0.75 G 0.5 w {MARGIN:.2} {y:.2} m {:.2} {y:.2} l S 0 G\n",
                W - MARGIN,
                y = self.y + 2.0
            );
            self.current.extend_from_slice(rule.as_bytes());
        }
        self.space(6.0);
    }

    /// The finished file.
    pub fn finish(mut self) -> Vec<u8> {
        if !self.current.is_empty() || self.pages.is_empty() {
            self.new_page();
        }
        let n = self.pages.len();
        let footer = self.footer.clone();
        for (i, page) in self.pages.iter_mut().enumerate() {
            let mut f = std::mem::take(&mut self.current);
            let line = format!("{footer}   page {} of {n}", i + 1);
            f.extend_from_slice(
                format!("BT /F1 7.5 Tf {MARGIN:.2} {:.2} Td (", MARGIN - 20.0).as_bytes(),
            );
            f.extend(escape(&line));
            f.extend_from_slice(b") Tj ET\n");
            page.extend(f);
        }
        // Objects: 1 catalog, 2 pages, 3-5 fonts, 6 info, then a page and
        // its content stream for each page.
        let mut objects: Vec<Vec<u8>> = Vec::new();
        objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
        let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 7 + 2 * i)).collect();
        objects
            .push(format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")).into_bytes());
        for name in ["Helvetica", "Helvetica-Bold", "Courier"] {
            objects.push(
                format!("<< /Type /Font /Subtype /Type1 /BaseFont /{name} /Encoding /WinAnsiEncoding >>")
                    .into_bytes(),
            );
        }
        let mut info = b"<< /Producer (Kenning) /Title (".to_vec();
        info.extend(escape(&self.title));
        info.extend_from_slice(b") >>");
        objects.push(info);
        for (i, content) in self.pages.iter().enumerate() {
            objects.push(
                format!(
                    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {W} {H}] /Resources << /Font << /F1 3 0 R /F2 4 0 R /F3 5 0 R >> >> /Contents {} 0 R >>",
                    8 + 2 * i
                )
                .into_bytes(),
            );
            let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
            stream.extend_from_slice(content);
            stream.extend_from_slice(b"\nendstream");
            objects.push(stream);
        }
        let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend_from_slice(o);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_lines_inside_the_width() {
        let text = "Every search, review and change is written to a tamper-evident audit trail before the caller gets an answer.";
        let lines = wrap(text, Font::Regular, 10.0, 200.0);
        assert!(lines.len() > 1);
        assert!(lines
            .iter()
            .all(|l| text_width(l, Font::Regular, 10.0) <= 200.0));
        assert_eq!(lines.join(" "), text);
        let hash = "a".repeat(64);
        let lines = wrap(&hash, Font::Mono, 10.0, 100.0);
        assert!(lines
            .iter()
            .all(|l| text_width(l, Font::Mono, 10.0) <= 100.0));
        assert_eq!(lines.concat(), hash);
    }

    #[test]
    fn the_file_is_well_formed_and_holds_its_text() {
        let mut d = Document::new("Test (report)", "footer");
        d.heading("Accountability report", 16.0);
        for i in 0..120 {
            d.text(
                &format!("line {i} with (brackets) and a back\\slash, 80% – done"),
                Font::Regular,
                10.0,
            );
        }
        d.table(&["a", "b"], &[vec!["1".into(), "2".into()]], &[1.0, 1.0]);
        let pdf = d.finish();
        let has = |needle: &[u8]| pdf.windows(needle.len()).any(|w| w == needle);
        assert!(pdf.starts_with(b"%PDF-1.4"));
        assert!(pdf.ends_with(b"%%EOF\n"));
        // Every xref entry points at the object it names (offsets in bytes).
        let tail = String::from_utf8_lossy(&pdf[pdf.len() - 40..]).into_owned();
        let xref_at: usize = tail
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(pdf[xref_at..].starts_with(b"xref\n"));
        let table = String::from_utf8_lossy(&pdf[xref_at..]).into_owned();
        let entries: Vec<usize> = table
            .lines()
            .skip(3)
            .take_while(|l| l.ends_with(" n "))
            .map(|l| l[..10].parse().unwrap())
            .collect();
        assert!(entries.len() >= 9, "{}", entries.len());
        for (i, off) in entries.iter().enumerate() {
            assert!(
                pdf[*off..].starts_with(format!("{} 0 obj", i + 1).as_bytes()),
                "object {}",
                i + 1
            );
        }
        assert!(has(b"/Count 3"), "120 lines take three pages");
        // Brackets and backslashes escaped, the en dash in WinAnsi (0x96).
        assert!(has(
            b"(line 119 with \\(brackets\\) and a back\\\\slash, 80% \x96 done)"
        ));
        assert!(has(b"page 3 of 3"));
    }
}
