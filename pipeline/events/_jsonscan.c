/*
 * Tocsin's JSON record scanner: reads messages of Tocsin's own JSON (one object, or an
 * array of objects, of one record kind) straight into columns, without a Python object
 * per record.
 *
 * Contract with pipeline/events/json_scan.py: the scanner takes a message only when
 * every record in it has the plain shape (known fields only, each once; every time and
 * number field there; a time an integer; a number one a double holds as orjson reads
 * it; strings valid UTF-8, escapes decoded; "attributes" an object of strings, each key
 * once; "type", if there, the kind's name) and the message is valid JSON that is not an
 * empty array. Any other message -- malformed, unusual or simply rare -- is flagged, and
 * the caller decodes it with the Python path, the one source of every rejection reason.
 * Values are not checked here (ranges, lengths, choices): the caller checks the columns
 * and sends a message with a record that fails to the Python path too.
 *
 * The bytes are scanned with the GIL released; strings are interned per column by
 * their bytes (a stream repeats the same few service, host and metric names), and only
 * the distinct ones become Python strings.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

/* ------------------------------------------------------------------ growable arrays */

typedef struct {
    char *data;
    size_t len, cap; /* bytes */
} vec_t;

static int vec_reserve(vec_t *v, size_t more) {
    if (v->len + more <= v->cap) return 0;
    size_t cap = v->cap ? v->cap * 2 : 4096;
    while (cap < v->len + more) cap *= 2;
    char *data = realloc(v->data, cap);
    if (!data) return -1;
    v->data = data;
    v->cap = cap;
    return 0;
}

#define VEC_PUSH(v, type, x) \
    (vec_reserve((v), sizeof(type)) ? -1 : (*(type *)((v)->data + (v)->len) = (x), \
                                            (v)->len += sizeof(type), 0))

/* ------------------------------------------------------------------ interned strings */

typedef struct {
    const char *p;
    Py_ssize_t n;
} span_t;

typedef struct {
    vec_t spans;      /* span_t per distinct string, in first-seen order */
    int32_t *slots;   /* open addressing: index + 1 into spans, 0 free */
    uint64_t *hashes; /* hash of the slot's string */
    size_t cap;       /* slots, a power of two */
} intern_t;

static uint64_t hash_bytes(const char *p, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
    return h;
}

static int intern_grow(intern_t *t) {
    size_t cap = t->cap ? t->cap * 2 : 256;
    int32_t *slots = calloc(cap, sizeof(int32_t));
    uint64_t *hashes = malloc(cap * sizeof(uint64_t));
    if (!slots || !hashes) { free(slots); free(hashes); return -1; }
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i]) continue;
        size_t j = t->hashes[i] & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = t->slots[i];
        hashes[j] = t->hashes[i];
    }
    free(t->slots);
    free(t->hashes);
    t->slots = slots;
    t->hashes = hashes;
    t->cap = cap;
    return 0;
}

/* The index of the string p[0:n] among t's distinct strings (added if new), or -1. */
static int32_t intern(intern_t *t, const char *p, Py_ssize_t n) {
    size_t count = t->spans.len / sizeof(span_t);
    if ((count + 1) * 2 > t->cap && intern_grow(t)) return -1;
    uint64_t h = hash_bytes(p, n);
    size_t j = h & (t->cap - 1);
    while (t->slots[j]) {
        if (t->hashes[j] == h) {
            span_t *s = (span_t *)t->spans.data + (t->slots[j] - 1);
            if (s->n == n && memcmp(s->p, p, (size_t)n) == 0) return t->slots[j] - 1;
        }
        j = (j + 1) & (t->cap - 1);
    }
    span_t s = {p, n};
    if (VEC_PUSH(&t->spans, span_t, s)) return -1;
    t->slots[j] = (int32_t)count + 1;
    t->hashes[j] = h;
    return (int32_t)count;
}

/* ------------------------------------------------------------------ columns */

enum { T_TIME, T_NUMBER, T_STRING, T_ATTRIBUTES }; /* a field's type, from Python */
#define MAX_FIELDS 24

typedef struct {
    int type, required;
    const char *name;
    Py_ssize_t name_len;
    vec_t data;       /* int64 (time), double (number) or int32 (string index, -1 absent) */
    intern_t strings; /* a string field's distinct values */
} column_t;

typedef struct {
    char *data;
    size_t len, cap;
} block_t;

typedef struct {
    int count;
    column_t columns[MAX_FIELDS];
    const char *kind; /* what "type" must say */
    Py_ssize_t kind_len;
    vec_t msg, elem;           /* int32 per row */
    vec_t offsets;             /* int32 per row + 1: attributes */
    vec_t keys, values;        /* int32 per attribute entry */
    intern_t attr_keys, attr_values;
    vec_t blocks;              /* block_t: unescaped strings (never moved once written) */
} out_t;

static void intern_free(intern_t *t) {
    free(t->spans.data);
    free(t->slots);
    free(t->hashes);
}

static void out_free(out_t *o) {
    for (int i = 0; i < o->count; i++) {
        free(o->columns[i].data.data);
        intern_free(&o->columns[i].strings);
    }
    free(o->msg.data); free(o->elem.data); free(o->offsets.data);
    free(o->keys.data); free(o->values.data);
    intern_free(&o->attr_keys);
    intern_free(&o->attr_values);
    for (size_t i = 0; i < o->blocks.len / sizeof(block_t); i++)
        free(((block_t *)o->blocks.data)[i].data);
    free(o->blocks.data);
}

/* Room for n bytes of an unescaped string that stays where it is. */
static char *arena_take(out_t *o, size_t n) {
    block_t *last = o->blocks.len ? (block_t *)(o->blocks.data + o->blocks.len) - 1 : NULL;
    if (!last || last->cap - last->len < n) {
        block_t b = {NULL, 0, n > 65536 ? n : 65536};
        if (!(b.data = malloc(b.cap)) || VEC_PUSH(&o->blocks, block_t, b)) {
            free(b.data);
            return NULL;
        }
        last = (block_t *)(o->blocks.data + o->blocks.len) - 1;
    }
    char *p = last->data + last->len;
    last->len += n;
    return p;
}

/* Row and attribute counts at a message's start, to drop its rows if it is flagged. */
typedef struct {
    size_t rows, entries;
} mark_t;

static mark_t out_mark(const out_t *o) {
    mark_t m = {o->msg.len / sizeof(int32_t), o->keys.len / sizeof(int32_t)};
    return m;
}

static void out_rewind(out_t *o, mark_t m) {
    o->msg.len = o->elem.len = m.rows * sizeof(int32_t);
    for (int i = 0; i < o->count; i++) {
        column_t *c = &o->columns[i];
        c->data.len = m.rows * (c->type == T_TIME ? sizeof(int64_t) :
                                c->type == T_NUMBER ? sizeof(double) : sizeof(int32_t));
    }
    o->offsets.len = (m.rows + 1) * sizeof(int32_t);
    o->keys.len = o->values.len = m.entries * sizeof(int32_t);
}

/* ------------------------------------------------------------------ the reader */

typedef struct {
    const char *p, *end;
} cur_t;

#define FLAGGED 1 /* the message goes to the Python path */
#define NOMEM 2

static inline void skip_ws(cur_t *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

/* Whether p[0:n] is valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF). */
static int valid_utf8(const uint8_t *p, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        if (b < 0x80) { i++; continue; }
        int more;
        uint32_t cp;
        if (b >= 0xC2 && b <= 0xDF) { more = 1; cp = b & 0x1F; }
        else if (b >= 0xE0 && b <= 0xEF) { more = 2; cp = b & 0x0F; }
        else if (b >= 0xF0 && b <= 0xF4) { more = 3; cp = b & 0x07; }
        else return 0;
        if (i + more >= n) return 0;
        for (int k = 1; k <= more; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((more == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (more == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += more + 1;
    }
    return 1;
}

static int hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= (uint32_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v |= (uint32_t)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') v |= (uint32_t)(ch - 'A' + 10);
        else return FLAGGED;
    }
    *out = v;
    return 0;
}

/* The escaped string between q0 and q1 (the quotes excluded) unescaped into the arena;
 * a lone surrogate is left to the Python path (orjson refuses it). */
static int unescape(out_t *o, const char *q0, const char *q1, span_t *s) {
    char *dst = arena_take(o, (size_t)(q1 - q0)); /* unescaping never lengthens */
    if (!dst) return NOMEM;
    char *w = dst;
    for (const char *r = q0; r < q1;) {
        if (*r != '\\') { *w++ = *r++; continue; }
        if (r + 1 >= q1) return FLAGGED;
        char e = r[1];
        r += 2;
        switch (e) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (q1 - r < 4 || hex4(r, &cp)) return FLAGGED;
            r += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return FLAGGED;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (q1 - r < 6 || r[0] != '\\' || r[1] != 'u' || hex4(r + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return FLAGGED;
                r += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            /* \uXXXX takes 6 bytes and writes at most 3; a pair takes 12 and writes 4 */
            if (cp < 0x80) *w++ = (char)cp;
            else if (cp < 0x800) {
                *w++ = (char)(0xC0 | (cp >> 6));
                *w++ = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *w++ = (char)(0xE0 | (cp >> 12));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *w++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *w++ = (char)(0xF0 | (cp >> 18));
                *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *w++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: return FLAGGED;
        }
    }
    s->p = dst;
    s->n = w - dst;
    return 0;
}

/* A string: its bytes (unescaped if need be), or FLAGGED. */
static int read_string(cur_t *c, out_t *o, span_t *s) {
    if (c->p >= c->end || *c->p != '"') return FLAGGED;
    const char *start = ++c->p, *r = start;
    int escaped = 0;
    for (;; r++) {
        if (r >= c->end) return FLAGGED;
        uint8_t ch = (uint8_t)*r;
        if (ch == '"') break;
        if (ch < 0x20) return FLAGGED;
        if (ch == '\\') {
            escaped = 1;
            if (++r >= c->end) return FLAGGED; /* the escaped byte, a quote included */
        }
    }
    if (!valid_utf8((const uint8_t *)start, r - start)) return FLAGGED;
    c->p = r + 1;
    if (escaped) return unescape(o, start, r, s);
    s->p = start;
    s->n = r - start;
    return 0;
}

/* A JSON number's token; ``integer``: no fraction or exponent. FLAGGED if malformed. */
static int read_number(cur_t *c, span_t *s, int *integer) {
    const char *p = c->p, *start = p;
    *integer = 1;
    if (p < c->end && *p == '-') p++;
    if (p >= c->end) return FLAGGED;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (p < c->end && *p >= '0' && *p <= '9') p++;
    else return FLAGGED;
    if (p < c->end && *p == '.') {
        *integer = 0;
        p++;
        if (p >= c->end || *p < '0' || *p > '9') return FLAGGED;
        while (p < c->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < c->end && (*p == 'e' || *p == 'E')) {
        *integer = 0;
        p++;
        if (p < c->end && (*p == '+' || *p == '-')) p++;
        if (p >= c->end || *p < '0' || *p > '9') return FLAGGED;
        while (p < c->end && *p >= '0' && *p <= '9') p++;
    }
    s->p = start;
    s->n = p - start;
    c->p = p;
    return 0;
}

/* An integer of at most 18 digits (orjson and int64 agree on it). */
static int read_int64(cur_t *c, int64_t *out) {
    span_t s;
    int integer;
    if (read_number(c, &s, &integer) || !integer) return FLAGGED;
    const char *p = s.p;
    int negative = *p == '-';
    if (negative) p++;
    if (s.p + s.n - p > 18) return FLAGGED;
    int64_t v = 0;
    for (; p < s.p + s.n; p++) v = v * 10 + (*p - '0');
    *out = negative ? -v : v;
    return 0;
}

/* A number as the double Python's float() of orjson's reading is: integers of at most
 * 15 digits exactly (orjson reads them as ints); other numbers by strtod, correctly
 * rounded like orjson's parser; a number that overflows is left to the Python path. */
static int read_double(cur_t *c, double *out) {
    span_t s;
    int integer;
    char buf[64];
    if (read_number(c, &s, &integer)) return FLAGGED;
    if (integer) { /* as a Python int: "-0" is 0, not -0.0 */
        const char *p = s.p + (*s.p == '-');
        if (s.p + s.n - p > 15) return FLAGGED;
        int64_t v = 0;
        for (const char *q = p; q < s.p + s.n; q++) v = v * 10 + (*q - '0');
        *out = (double)(*s.p == '-' ? -v : v);
        return 0;
    }
    if (s.n >= (Py_ssize_t)sizeof(buf)) return FLAGGED;
    memcpy(buf, s.p, (size_t)s.n);
    buf[s.n] = 0;
    double v = strtod(buf, NULL);
    if (!isfinite(v)) return FLAGGED;
    *out = v;
    return 0;
}

/* An object member's key and the colon after it, the cursor left on its value. */
static int read_key(cur_t *c, out_t *o, span_t *key) {
    int r = read_string(c, o, key);
    if (r) return r;
    skip_ws(c);
    if (c->p >= c->end || *c->p != ':') return FLAGGED;
    c->p++;
    skip_ws(c);
    return 0;
}

/* Past what follows an object member's value: a comma and another member, or (``end``
 * set) the object's closing brace; FLAGGED if neither. */
static int next_member(cur_t *c, int *end) {
    skip_ws(c);
    *end = c->p < c->end && *c->p == '}';
    if (!*end && (c->p >= c->end || *c->p != ',')) return FLAGGED;
    c->p++;
    if (!*end) skip_ws(c);
    return 0;
}

static int push_index(intern_t *t, vec_t *idx, span_t s) {
    int32_t i = intern(t, s.p, s.n);
    if (i < 0) return NOMEM;
    return VEC_PUSH(idx, int32_t, i) ? NOMEM : 0;
}

/* "attributes": an object of strings, each key once. */
static int read_attributes(cur_t *c, out_t *o) {
    if (c->p >= c->end || *c->p != '{') return FLAGGED;
    c->p++;
    skip_ws(c);
    size_t first = o->keys.len / sizeof(int32_t);
    if (c->p < c->end && *c->p == '}') { c->p++; return 0; }
    for (;;) {
        span_t k, v;
        int r;
        if ((r = read_key(c, o, &k)) || (r = read_string(c, o, &v))) return r;
        int32_t ki = intern(&o->attr_keys, k.p, k.n);
        if (ki < 0) return NOMEM;
        const int32_t *keys = (const int32_t *)o->keys.data;
        for (size_t e = first; e < o->keys.len / sizeof(int32_t); e++)
            if (keys[e] == ki) return FLAGGED;
        if (VEC_PUSH(&o->keys, int32_t, ki)) return NOMEM;
        int end;
        if ((r = push_index(&o->attr_values, &o->values, v)) || (r = next_member(c, &end)))
            return r;
        if (end) return 0;
    }
}

#define KEY_IS(s, lit) ((s).n == (Py_ssize_t)sizeof(lit) - 1 && memcmp((s).p, lit, sizeof(lit) - 1) == 0)

typedef union {
    int64_t t;
    double v;
    span_t s;
} value_t;

static int read_record(cur_t *c, out_t *o, int32_t msg, int32_t elem) {
    if (c->p >= c->end || *c->p != '{') return FLAGGED;
    c->p++;
    skip_ws(c);
    uint32_t seen = 0;
    int typed = 0, r;
    value_t values[MAX_FIELDS];
    if (c->p < c->end && *c->p == '}') return FLAGGED; /* no required field */
    for (;;) {
        span_t key;
        if ((r = read_key(c, o, &key))) return r;
        int f = 0;
        while (f < o->count && !(o->columns[f].name_len == key.n &&
                                 memcmp(o->columns[f].name, key.p, (size_t)key.n) == 0))
            f++;
        if (f < o->count) {
            if (seen & (1u << f)) return FLAGGED;
            seen |= 1u << f;
            switch (o->columns[f].type) {
            case T_TIME: r = read_int64(c, &values[f].t); break;
            case T_NUMBER: r = read_double(c, &values[f].v); break;
            case T_STRING: r = read_string(c, o, &values[f].s); break;
            default: r = read_attributes(c, o); break;
            }
        } else if (KEY_IS(key, "type") && !typed) {
            span_t type;
            typed = 1;
            r = read_string(c, o, &type);
            if (!r && !(type.n == o->kind_len && memcmp(type.p, o->kind, (size_t)type.n) == 0))
                r = FLAGGED;
        } else return FLAGGED; /* an unknown field, or "type" twice */
        int end;
        if (r || (r = next_member(c, &end))) return r;
        if (end) break;
    }
    for (int f = 0; f < o->count; f++) {
        column_t *col = &o->columns[f];
        int present = (seen >> f) & 1;
        if (!present && (col->required || col->type == T_TIME || col->type == T_NUMBER))
            return FLAGGED;
        switch (col->type) {
        case T_TIME: r = VEC_PUSH(&col->data, int64_t, values[f].t) ? NOMEM : 0; break;
        case T_NUMBER: r = VEC_PUSH(&col->data, double, values[f].v) ? NOMEM : 0; break;
        case T_STRING:
            r = present ? push_index(&col->strings, &col->data, values[f].s)
                        : (VEC_PUSH(&col->data, int32_t, -1) ? NOMEM : 0);
            break;
        default: r = 0;
        }
        if (r) return r;
    }
    if (VEC_PUSH(&o->msg, int32_t, msg) || VEC_PUSH(&o->elem, int32_t, elem)) return NOMEM;
    return VEC_PUSH(&o->offsets, int32_t, (int32_t)(o->keys.len / sizeof(int32_t))) ? NOMEM : 0;
}

static int read_message(const char *p, Py_ssize_t n, out_t *o, int32_t msg) {
    cur_t c = {p, p + n};
    int r;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '{') {
        if ((r = read_record(&c, o, msg, 0))) return r;
    } else if (c.p < c.end && *c.p == '[') {
        c.p++;
        skip_ws(&c);
        if (c.p < c.end && *c.p == ']') return FLAGGED; /* empty: counted by Python */
        for (int32_t elem = 0;; elem++) {
            if ((r = read_record(&c, o, msg, elem))) return r;
            skip_ws(&c);
            if (c.p < c.end && *c.p == ',') { c.p++; skip_ws(&c); continue; }
            if (c.p < c.end && *c.p == ']') { c.p++; break; }
            return FLAGGED;
        }
    } else return FLAGGED;
    skip_ws(&c);
    return c.p == c.end ? 0 : FLAGGED;
}

/* ------------------------------------------------------------------ Python */

static PyObject *vec_bytes(const vec_t *v) {
    return PyBytes_FromStringAndSize(v->data ? v->data : "", (Py_ssize_t)v->len);
}

static PyObject *string_list(const intern_t *t) {
    size_t count = t->spans.len / sizeof(span_t);
    PyObject *list = PyList_New((Py_ssize_t)count);
    if (!list) return NULL;
    for (size_t i = 0; i < count; i++) {
        const span_t *s = (const span_t *)t->spans.data + i;
        PyObject *text = PyUnicode_DecodeUTF8(s->p, s->n, "strict");
        if (!text) { Py_DECREF(list); return NULL; }
        PyList_SET_ITEM(list, (Py_ssize_t)i, text);
    }
    return list;
}

PyDoc_STRVAR(scan_doc,
"scan(values, max_bytes, kind, fields) -> tuple\n\n"
"Scan a list of message values (bytes) of Tocsin JSON records of ``kind`` (bytes, what\n"
"a record's \"type\" must say). ``fields``: (json name bytes, type, required) per field,\n"
"type 0 time, 1 number, 2 string, 3 attributes. Returns (flagged, msg, elem, columns,\n"
"attributes): flagged has a byte per message (1: decode it with the Python path; an\n"
"empty message or one over max_bytes is flagged too); msg, elem are int32 bytes per row\n"
"of the messages taken, in message order; columns has per field int64 bytes (time),\n"
"float64 bytes (number), (int32 index bytes, distinct strings) for a string (index -1:\n"
"absent) or None; attributes is (offsets int32 rows + 1, key indexes, value indexes,\n"
"distinct keys, distinct values). All numbers native-endian.");

static PyObject *scan(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *values, *fields;
    Py_ssize_t max_bytes;
    out_t o;
    memset(&o, 0, sizeof(o));
    if (!PyArg_ParseTuple(args, "O!ny#O!", &PyList_Type, &values, &max_bytes, &o.kind,
                          &o.kind_len, &PyTuple_Type, &fields))
        return NULL;
    if (PyTuple_GET_SIZE(fields) > MAX_FIELDS)
        return PyErr_Format(PyExc_ValueError, "at most %d fields", MAX_FIELDS);
    o.count = (int)PyTuple_GET_SIZE(fields);
    for (int i = 0; i < o.count; i++) {
        column_t *c = &o.columns[i];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, i), "y#ip", &c->name, &c->name_len,
                              &c->type, &c->required))
            return NULL;
        if (c->type < T_TIME || c->type > T_ATTRIBUTES)
            return PyErr_Format(PyExc_ValueError, "field %d: unknown type %d", i, c->type);
    }
    Py_ssize_t count = PyList_GET_SIZE(values);
    const char **data = malloc(sizeof(char *) * (size_t)(count ? count : 1));
    Py_ssize_t *sizes = malloc(sizeof(Py_ssize_t) * (size_t)(count ? count : 1));
    PyObject *flagged = PyBytes_FromStringAndSize(NULL, count);
    if (!data || !sizes || !flagged) {
        free(data); free(sizes); Py_XDECREF(flagged);
        return PyErr_NoMemory();
    }
    char *flags = PyBytes_AS_STRING(flagged);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        if (!PyBytes_Check(v)) {
            free(data); free(sizes); Py_DECREF(flagged);
            return PyErr_Format(PyExc_TypeError, "message %zd is not bytes", i);
        }
        data[i] = PyBytes_AS_STRING(v);
        sizes[i] = PyBytes_GET_SIZE(v);
    }
    int failed = VEC_PUSH(&o.offsets, int32_t, 0);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count && !failed; i++) {
        flags[i] = 0;
        if (sizes[i] == 0 || sizes[i] > max_bytes) { flags[i] = 1; continue; }
        mark_t m = out_mark(&o);
        int r = read_message(data[i], sizes[i], &o, (int32_t)i);
        if (r == NOMEM) failed = 1;
        else if (r) { flags[i] = 1; out_rewind(&o, m); }
    }
    Py_END_ALLOW_THREADS
    free(data);
    free(sizes);
    PyObject *columns = failed ? NULL : PyTuple_New(o.count);
    for (int i = 0; columns && i < o.count; i++) {
        column_t *c = &o.columns[i];
        PyObject *item;
        if (c->type == T_STRING) {
            PyObject *names = string_list(&c->strings);
            item = names ? Py_BuildValue("(NN)", vec_bytes(&c->data), names) : NULL;
        } else if (c->type == T_ATTRIBUTES) {
            item = Py_NewRef(Py_None);
        } else {
            item = vec_bytes(&c->data);
        }
        if (!item) { Py_CLEAR(columns); break; }
        PyTuple_SET_ITEM(columns, i, item);
    }
    PyObject *keys = columns ? string_list(&o.attr_keys) : NULL;
    PyObject *names = keys ? string_list(&o.attr_values) : NULL;
    PyObject *result = NULL;
    if (names) /* "N" hands the references over, on failure too */
        result = Py_BuildValue("(NNNN(NNNNN))", flagged, vec_bytes(&o.msg), vec_bytes(&o.elem),
                               columns, vec_bytes(&o.offsets), vec_bytes(&o.keys),
                               vec_bytes(&o.values), keys, names);
    else {
        Py_DECREF(flagged);
        Py_XDECREF(columns);
        Py_XDECREF(keys);
        if (failed) PyErr_NoMemory();
    }
    out_free(&o);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jsonscan",
    "Tocsin's JSON record scanner (see pipeline/events/json_scan.py).", -1, methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__jsonscan(void) { return PyModule_Create(&module); }
