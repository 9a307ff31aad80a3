#include "support/textgen.h"

#include <string.h>

uint64_t textgen_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint32_t rnd(uint64_t *s, uint32_t n) { return n ? (uint32_t)(textgen_next(s) >> 33) % n : 0; }

static const char *const k_words[] = {
    /* English, with contractions and capitals */
    "the", "The", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Hello", "world", "tokenizer", "I'm",
    "don't", "you'll", "they'Re", "IT'S", "we've", "she'd", "O'Neill", "rock'n'roll", "e-mail", "U.S.A.", "naïve",
    "café", "coöperate", "internationalization", "supercalifragilisticexpialidocious", "llama", "LLaMA",
    /* German, French, Spanish, Polish, Turkish, Vietnamese, Icelandic */
    "Äpfel", "Straße", "Grüße", "über", "français", "garçon", "élève", "mañana", "¿Qué?", "¡Hola!", "Zażółć",
    "gęślą", "jaźń", "İstanbul", "ığdır", "Cửa", "Việt", "Nguyễn", "Þórður", "ðæ",
    /* Greek, Cyrillic, Armenian, Georgian */
    "Καλημέρα", "κόσμε", "ΑΒΓΔ", "ώρα", "Привет", "мир", "нещо", "Български", "ЁЖИК", "Բարեւ", "გამარჯობა",
    /* Hebrew, Arabic, Persian (right to left) */
    "שלום", "עולם", "مرحبا", "بالعالم", "سلام", "٣٤٥",
    /* Devanagari, Bengali, Tamil, Thai, Khmer, Lao, Tibetan */
    "नमस्ते", "दुनिया", "क्षत्रिय", "বাংলা", "தமிழ்", "สวัสดี", "ภาษาไทย", "កាន់តែពិសេសអាចខលចេញ", "ສະບາຍດີ", "བོད་ཡིག",
    /* Chinese, Japanese, Korean */
    "我想在", "apple工作", "天～", "中华人民共和国", "漢字", "こんにちは", "カタカナ", "ひらがな", "日本語", "안녕하세요",
    "한국어", "세계",
    /* symbols and math */
    "∑", "∫x²dx", "≤", "→", "©", "™", "°C", "µs", "½", "€100", "£5", "¥", "§3.1", "†", "‰",
};

static const char *const k_code[] = {
    "int main(void) {\n\treturn 0;\n}\n", "def f(x):\n    return x ** 2\n", "#include <stdio.h>",
    "for (i = 0; i < n; i++) a[i] += b[i];", "<div class=\"a\">&amp;</div>", "{\"key\": [1, 2.5e-3, null]}",
    "SELECT * FROM t WHERE id = 42;", "x != y && y >= z || !w", "a->b.c[0]", "$ ls -la | grep .c",
    "```python\nprint('hi')\n```", "if err != nil {\n\t\treturn err\n\t}", "fn main() { println!(\"{}\", 1); }",
    "console.log(`${a}`);", "// comment\n/* block */", "@decorator\nclass A:\n    pass",
    "https://example.com/a?b=c&d=e#f", "user@example.org", "C:\\Windows\\System32", "0x7fff_ffff", "1e-9",
    "i++;--j;", "~!@#$%^&*()_+-=[]{}|;':\",./<>?", "'''''''```````\"\"\"\"......!!!!!!??????",
};

static const char *const k_emoji[] = {
    "🦙", "😀", "😁", "🚀", "✅", "❤️", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🇯🇵", "😶‍🌫️", "🏳️‍🌈", "🤖", "🔥", "💯", "🧑🏿‍💻", "☕", "⭐",
};

static const char *const k_punct[] = {
    ".", ",", "!", "?", ";", ":", "...", "…", "—", "–", "-", "(", ")", "[", "]", "\"", "'", "“", "”", "‘", "’", "«",
    "»", "、", "。", "，", "！", "？", "（", "）", "・", "¡", "¿", "/", "\\", "|", "*", "&", "#", "@",
};

static const char *const k_specials[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                                         "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_5|>",
                                         "<|python_tag|>", "<|eom_id|>"};

static const char *const k_invalid[] = {"\x80", "\xff", "\xfe", "\xc0\xaf", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                        "\xf0\x9f\x98", "\xc3", "\xe0\x80\x80", "\xbf\xbf"};

typedef struct out_buf {
    char *p;
    size_t n, cap;
} out_buf;

static void put(out_buf *o, const char *s, size_t n) {
    if (o->n + n >= o->cap) return; /* full: drop */
    memcpy(o->p + o->n, s, n);
    o->n += n;
}
static void puts_(out_buf *o, const char *s) { put(o, s, strlen(s)); }

static void put_cp(out_buf *o, uint32_t cp) {
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    put(o, b, n);
}

static uint32_t random_cp(uint64_t *s, int flags) {
    for (;;) {
        uint32_t cp;
        switch (rnd(s, 6)) {
        case 0: cp = rnd(s, 0x80); break;            /* ASCII incl. controls and NUL */
        case 1: cp = 0x80 + rnd(s, 0x780); break;    /* Latin-1 .. Arabic */
        case 2: cp = 0x800 + rnd(s, 0xF800); break;  /* rest of the BMP */
        case 3: cp = 0x10000 + rnd(s, 0x20000); break; /* SMP, SIP */
        case 4: cp = 0x300 + rnd(s, 0x70); break;    /* combining diacritics */
        default: cp = 0x2000 + rnd(s, 0x70); break;  /* general punctuation, spaces, ZWJ */
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        if ((flags & TEXTGEN_NO_WS_EXOTIC) && (cp == 0x85 || cp == 0xFEFF)) continue;
        return cp;
    }
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

size_t textgen_string(uint64_t *s, char *buf, size_t cap, int max_segments, int flags) {
    out_buf o = {buf, 0, cap};
    int segs = 1 + (int)rnd(s, (uint32_t)max_segments);
    for (int k = 0; k < segs; k++) {
        uint32_t kind = rnd(s, 20);
        switch (kind) {
        case 0: case 1: case 2: case 3: case 4: case 5:
            puts_(&o, k_words[rnd(s, COUNT(k_words))]);
            break;
        case 6:
            puts_(&o, k_code[rnd(s, COUNT(k_code))]);
            break;
        case 7: { /* whitespace run */
            static const char *const ws[] = {" ", " ", " ", "\t", "\n", "\r\n", "\r", "\v", "\f", "\xC2\xA0",
                                             "\xE3\x80\x80", "\xE2\x80\x89"};
            int n = 1 + (int)rnd(s, 8);
            for (int i = 0; i < n; i++) puts_(&o, ws[rnd(s, COUNT(ws))]);
            break;
        }
        case 8: { /* digits */
            int n = 1 + (int)rnd(s, 12);
            for (int i = 0; i < n; i++) {
                char d = (char)('0' + rnd(s, 10));
                put(&o, &d, 1);
                if (rnd(s, 8) == 0) puts_(&o, rnd(s, 2) ? "." : ",");
            }
            break;
        }
        case 9:
            puts_(&o, k_emoji[rnd(s, COUNT(k_emoji))]);
            break;
        case 10: { /* letters with combining marks */
            put_cp(&o, 'a' + rnd(s, 26));
            int n = 1 + (int)rnd(s, 3);
            for (int i = 0; i < n; i++) put_cp(&o, 0x300 + rnd(s, 0x70));
            break;
        }
        case 11:
            puts_(&o, k_punct[rnd(s, COUNT(k_punct))]);
            break;
        case 12: { /* random code points */
            int n = 1 + (int)rnd(s, 4);
            for (int i = 0; i < n; i++) put_cp(&o, random_cp(s, flags));
            break;
        }
        case 13:
            if (flags & TEXTGEN_INVALID_UTF8) puts_(&o, k_invalid[rnd(s, COUNT(k_invalid))]);
            break;
        case 14:
            if (flags & TEXTGEN_SPECIALS) puts_(&o, k_specials[rnd(s, COUNT(k_specials))]);
            break;
        case 15: { /* repeated characters */
            static const char *const rep[] = {"=", "-", "!", "3", "a", " ", "\n", "_", "*", "\xE2\x96\x81"};
            const char *r = rep[rnd(s, COUNT(rep))];
            int n = 2 + (int)rnd(s, 12);
            for (int i = 0; i < n; i++) puts_(&o, r);
            break;
        }
        default:
            break;
        }
        /* separator */
        switch (rnd(s, 6)) {
        case 0: case 1: case 2: puts_(&o, " "); break;
        case 3: break;
        case 4: puts_(&o, rnd(s, 2) ? "\n" : "  "); break;
        default: puts_(&o, k_punct[rnd(s, COUNT(k_punct))]); break;
        }
    }
    if (o.n >= cap) o.n = cap - 1;
    buf[o.n] = 0;
    return o.n;
}

int textgen_valid_utf8(const char *buf, size_t n) {
    const unsigned char *s = (const unsigned char *)buf;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t l;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            l = 2;
            cp = c & 0x1F;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            l = 3;
            cp = c & 0x0F;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            l = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return 0;
        }
        if (i + l > n) return 0;
        for (size_t k = 1; k < l; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += l;
    }
    return 1;
}
