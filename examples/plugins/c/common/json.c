// See json.h.
#include "json.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *b;
    size_t n, i;
} scanner_t;

static int peek(const scanner_t *s) { return s->i < s->n ? s->b[s->i] : -1; }

static void ws(scanner_t *s) {
    while (s->i < s->n && (s->b[s->i] == ' ' || s->b[s->i] == '\t' || s->b[s->i] == '\n' ||
                           s->b[s->i] == '\r'))
        s->i++;
}

static bool eat(scanner_t *s, int c) {
    if (peek(s) != c) return false;
    s->i++;
    return true;
}

static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_hex(int c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool string(scanner_t *s) {
    if (!eat(s, '"')) return false;
    for (;;) {
        int c = peek(s);
        if (c < 0x20) return false; // end of input (-1) or a raw control character
        s->i++;
        if (c == '"') return true;
        if (c == '\\') {
            int e = peek(s);
            if (e == 'u') {
                for (size_t k = 1; k <= 4; k++)
                    if (s->i + k >= s->n || !is_hex(s->b[s->i + k])) return false;
                s->i += 5;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                s->i++;
            } else {
                return false;
            }
        }
    }
}

static size_t digits(scanner_t *s) {
    size_t start = s->i;
    while (is_digit(peek(s))) s->i++;
    return s->i - start;
}

static bool number(scanner_t *s) {
    eat(s, '-');
    if (!eat(s, '0') && digits(s) == 0) return false;
    if (eat(s, '.') && digits(s) == 0) return false;
    if (peek(s) == 'e' || peek(s) == 'E') {
        s->i++;
        if (peek(s) == '+' || peek(s) == '-') s->i++;
        if (digits(s) == 0) return false;
    }
    return true;
}

static bool literal(scanner_t *s, const char *word) {
    size_t len = strlen(word);
    if (s->n - s->i < len || memcmp(s->b + s->i, word, len) != 0) return false;
    s->i += len;
    return true;
}

static bool object(scanner_t *s, int depth, json_member_t **members, size_t *count);

static bool value(scanner_t *s, int depth) {
    switch (peek(s)) {
    case '{':
        return object(s, depth + 1, NULL, NULL);
    case '[':
        if (depth + 1 > JSON_MAX_DEPTH) return false;
        s->i++;
        ws(s);
        if (eat(s, ']')) return true;
        for (;;) {
            ws(s);
            if (!value(s, depth + 1)) return false;
            ws(s);
            if (eat(s, ']')) return true;
            if (!eat(s, ',')) return false;
        }
    case '"':
        return string(s);
    case 't':
        return literal(s, "true");
    case 'f':
        return literal(s, "false");
    case 'n':
        return literal(s, "null");
    default:
        return number(s);
    }
}

static bool object(scanner_t *s, int depth, json_member_t **members, size_t *count) {
    size_t cap = 0;
    if (depth > JSON_MAX_DEPTH || !eat(s, '{')) return false;
    ws(s);
    if (eat(s, '}')) return true;
    for (;;) {
        ws(s);
        size_t key_start = s->i + 1;
        if (!string(s)) return false;
        size_t key_end = s->i - 1;
        ws(s);
        if (!eat(s, ':')) return false;
        ws(s);
        size_t value_start = s->i;
        if (!value(s, depth)) return false;
        if (members) {
            if (*count == cap) {
                cap = cap ? cap * 2 : 8;
                *members = realloc(*members, cap * sizeof(json_member_t));
            }
            (*members)[(*count)++] = (json_member_t){key_start, key_end, value_start, s->i};
        }
        ws(s);
        if (eat(s, '}')) return true;
        if (!eat(s, ',')) return false;
    }
}

bool utf8_valid(const uint8_t *b, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = b[i];
        size_t more;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            more = 1, min = 0x80, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            more = 2, min = 0x800, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            more = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= more) return false;
        for (size_t k = 1; k <= more; k++) {
            if ((b[i + k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (b[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += more + 1;
    }
    return true;
}

bool json_object_members(const uint8_t *b, size_t n, json_member_t **members, size_t *count,
                         size_t *close) {
    scanner_t s = {b, n, 0};
    *members = NULL;
    *count = 0;
    if (!utf8_valid(b, n)) return false;
    ws(&s);
    if (peek(&s) != '{' || !object(&s, 1, members, count)) goto bad;
    *close = s.i - 1;
    ws(&s);
    if (s.i != n) goto bad;
    return true;
bad:
    free(*members);
    *members = NULL;
    return false;
}

void buf_append(uint8_t **buf, size_t *len, size_t *cap, const void *s, size_t n) {
    if (*len + n > *cap) {
        size_t want = *cap ? *cap : 64;
        while (want < *len + n) want *= 2;
        *buf = realloc(*buf, want);
        *cap = want;
    }
    if (n) memcpy(*buf + *len, s, n);
    *len += n;
}

void json_quote(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    buf_append(buf, len, cap, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"') buf_append(buf, len, cap, "\\\"", 2);
        else if (c == '\\') buf_append(buf, len, cap, "\\\\", 2);
        else if (c == '\n') buf_append(buf, len, cap, "\\n", 2);
        else if (c == '\r') buf_append(buf, len, cap, "\\r", 2);
        else if (c == '\t') buf_append(buf, len, cap, "\\t", 2);
        else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(buf, len, cap, esc, 6);
        } else buf_append(buf, len, cap, &c, 1);
    }
    buf_append(buf, len, cap, "\"", 1);
}

static int hexval(uint8_t c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

static size_t put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 63));
        return 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 63));
        out[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 63));
    out[2] = (char)(0x80 | ((cp >> 6) & 63));
    out[3] = (char)(0x80 | (cp & 63));
    return 4;
}

char *json_decode(const uint8_t *s, size_t n, size_t *out_len) {
    char *out = malloc(n + 1); // decoding never grows the text
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            out[o++] = (char)s[i++];
            continue;
        }
        uint8_t e = s[i + 1];
        i += 2;
        switch (e) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            uint32_t cp = 0;
            for (int k = 0; k < 4; k++) cp = cp << 4 | (uint32_t)hexval(s[i + k]);
            i += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && i + 6 <= n && s[i] == '\\' && s[i + 1] == 'u') {
                uint32_t lo = 0;
                for (int k = 0; k < 4; k++) lo = lo << 4 | (uint32_t)hexval(s[i + 2 + k]);
                if (lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    i += 6;
                }
            }
            if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd; // a lone surrogate
            o += put_utf8(out + o, cp);
            break;
        }
        default: out[o++] = (char)e; break; // " \ /
        }
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

static bool key_is(const uint8_t *doc, const json_member_t *m, const char *name) {
    size_t len = strlen(name);
    return m->key_end - m->key_start == len && memcmp(doc + m->key_start, name, len) == 0;
}

bool json_config_table(const uint8_t *doc, size_t n, const char *name, json_table_t *out,
                       const char **why) {
    json_member_t *root, *items = NULL;
    size_t root_count, close, count;
    out->pairs = NULL;
    out->len = 0;
    if (!json_object_members(doc, n, &root, &root_count, &close)) {
        *why = "config is not a table";
        return false;
    }
    const json_member_t *entry = NULL;
    for (size_t i = 0; i < root_count; i++)
        if (key_is(doc, &root[i], name)) entry = &root[i];
    bool ok = true;
    if (entry) {
        const uint8_t *v = doc + entry->value_start;
        size_t vn = entry->value_end - entry->value_start;
        ok = json_object_members(v, vn, &items, &count, &close);
        for (size_t i = 0; ok && i < count; i++)
            ok = v[items[i].value_start] == '"';
        if (ok) {
            out->pairs = calloc(count ? count : 1, sizeof(json_pair_t));
            out->len = count;
            for (size_t i = 0; i < count; i++) {
                json_pair_t *p = &out->pairs[i];
                p->key = json_decode(v + items[i].key_start, items[i].key_end - items[i].key_start,
                                     &p->key_len);
                p->value = json_decode(v + items[i].value_start + 1,
                                       items[i].value_end - items[i].value_start - 2,
                                       &p->value_len);
            }
        } else {
            *why = "a config entry must be a table of strings";
        }
        free(items);
    }
    free(root);
    return ok;
}

void json_table_free(json_table_t *t) {
    for (size_t i = 0; i < t->len; i++) {
        free(t->pairs[i].key);
        free(t->pairs[i].value);
    }
    free(t->pairs);
    t->pairs = NULL;
    t->len = 0;
}

void text_add_n(text_t *t, const void *s, size_t n) { buf_append(&t->ptr, &t->len, &t->cap, s, n); }

void text_add(text_t *t, const char *s) { text_add_n(t, s, strlen(s)); }

void text_add_uint(text_t *t, size_t v) {
    char digits[24];
    size_t i = sizeof digits;
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    text_add_n(t, digits + i, sizeof digits - i);
}

const char *text_cstr(text_t *t) {
    text_add_n(t, "", 1);
    t->len--;
    return (const char *)t->ptr;
}
