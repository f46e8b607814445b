//! Convex's base32: alphabet `0123456789abcdefghjkmnpqrstvwxyz` (no i, l, o, u), bits taken
//! most significant first, no padding. `n` bytes become `8·⌊n/5⌋ + [0,2,4,5,7][n % 5]`
//! characters; the last character's unused low bits are zero in canonical text.

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Inverse of [`ALPHABET`]; 0xFF marks bytes outside it (including uppercase letters).
const DECODE: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Characters needed for `n` bytes.
pub(crate) const fn encoded_len(n: usize) -> usize {
    (n * 8).div_ceil(5)
}

/// Encodes `bytes`; the final character's unused bits are zero.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(bytes.len()));
    // Invariant: `bits` < 5 between bytes, so `acc` never holds more than 12 bits.
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// A character outside the alphabet, at a byte offset of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadCharacter {
    pub ch: char,
    pub position: usize,
}

/// Decodes to `⌊5·len/8⌋` bytes, dropping leftover bits. It does not check canonical form:
/// callers re-encode and compare.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, BadCharacter> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for (position, ch) in text.char_indices() {
        let digit = u8::try_from(ch)
            .ok()
            .map(|b| DECODE[usize::from(b)])
            .filter(|&d| d != 0xFF)
            .ok_or(BadCharacter { ch, position })?;
        acc = (acc << 5) | u32::from(digit);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        let expected = [0, 2, 4, 5, 7, 8, 10, 12, 13, 15, 16];
        for (n, &len) in expected.iter().enumerate() {
            assert_eq!(encoded_len(n), len);
            assert_eq!(encode(&vec![0xA5; n]).len(), len);
        }
    }

    #[test]
    fn round_trip() {
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn known_text() {
        assert_eq!(encode(&[0xFF]), "zw");
        assert_eq!(encode(&[0x00, 0x44, 0x32, 0x14, 0xC7]), "01234567");
        assert_eq!(decode("zw").unwrap(), vec![0xFF]);
    }

    #[test]
    fn rejects_characters_outside_the_alphabet() {
        for (text, ch, position) in [
            ("ab u", ' ', 2),
            ("u", 'u', 0),
            ("0I", 'I', 1),
            ("é", 'é', 0),
        ] {
            assert_eq!(decode(text), Err(BadCharacter { ch, position }), "{text}");
        }
        assert!(decode("0123456789abcdefghjkmnpqrstvwxyz").is_ok());
        for ch in ['i', 'l', 'o', 'u', 'A', 'Z'] {
            assert!(decode(&ch.to_string()).is_err());
        }
    }
}
