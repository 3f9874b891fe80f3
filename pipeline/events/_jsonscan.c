/*
 * Tocsin's JSON metric scanner: reads messages of Tocsin's own metric JSON (one object,
 * or an array of objects) straight into columns, without a Python object per record.
 *
 * Contract with pipeline/events/json_scan.py: the scanner takes a message only when
 * every record in it has the plain shape (the known fields, each once; "time" an
 * integer; "value" a number a double holds as orjson reads it; the names strings with
 * no escape; "attributes" an object of such strings, each key once; "type", if there,
 * "metric") and the message is valid JSON that is not an empty array. Any other message
 * -- malformed, unusual or simply rare -- is flagged, and the caller decodes it with the
 * Python path, the one source of every rejection reason. Nothing here words an error.
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

enum { C_SERVICE, C_HOST, C_NAME, C_UNIT, C_KEY, C_VALUE, N_STRINGS };

typedef struct {
    vec_t msg, elem, time, value;      /* int32, int32, int64, double per row */
    vec_t idx[4];                      /* int32 per row: service, host, name, unit */
    vec_t offsets;                     /* int32 per row + 1: attributes */
    vec_t keys, values;                /* int32 per attribute entry */
    intern_t strings[N_STRINGS];
} out_t;

static void out_free(out_t *o) {
    vec_t *vs[] = {&o->msg, &o->elem, &o->time, &o->value, &o->idx[0], &o->idx[1],
                   &o->idx[2], &o->idx[3], &o->offsets, &o->keys, &o->values};
    for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) free(vs[i]->data);
    for (int i = 0; i < N_STRINGS; i++) {
        free(o->strings[i].spans.data);
        free(o->strings[i].slots);
        free(o->strings[i].hashes);
    }
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
    o->time.len = m.rows * sizeof(int64_t);
    o->value.len = m.rows * sizeof(double);
    for (int i = 0; i < 4; i++) o->idx[i].len = m.rows * sizeof(int32_t);
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

/* A string with no escape: its bytes between the quotes, or FLAGGED. */
static int read_string(cur_t *c, span_t *s) {
    if (c->p >= c->end || *c->p != '"') return FLAGGED;
    const char *start = ++c->p;
    const char *q = memchr(start, '"', (size_t)(c->end - start));
    if (!q) return FLAGGED;
    for (const char *r = start; r < q; r++)
        if (*r == '\\' || (uint8_t)*r < 0x20) return FLAGGED;
    if (!valid_utf8((const uint8_t *)start, q - start)) return FLAGGED;
    s->p = start;
    s->n = q - start;
    c->p = q + 1;
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
 * 15 digits exactly; other numbers by strtod, correctly rounded like orjson's parser;
 * a number that overflows is left to the Python path. */
static int read_double(cur_t *c, double *out) {
    span_t s;
    int integer;
    char buf[64];
    if (read_number(c, &s, &integer)) return FLAGGED;
    if (integer) {
        const char *p = s.p + (*s.p == '-');
        if (s.p + s.n - p > 15) return FLAGGED;
    }
    if (s.n >= (Py_ssize_t)sizeof(buf)) return FLAGGED;
    memcpy(buf, s.p, (size_t)s.n);
    buf[s.n] = 0;
    double v = strtod(buf, NULL);
    if (!isfinite(v)) return FLAGGED;
    *out = v;
    return 0;
}

static int push_string(out_t *o, int column, vec_t *idx, span_t s) {
    int32_t i = intern(&o->strings[column], s.p, s.n);
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
        if ((r = read_string(c, &k))) return r;
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':') return FLAGGED;
        c->p++;
        skip_ws(c);
        if ((r = read_string(c, &v))) return r;
        int32_t ki = intern(&o->strings[C_KEY], k.p, k.n);
        if (ki < 0) return NOMEM;
        const int32_t *keys = (const int32_t *)o->keys.data;
        for (size_t e = first; e < o->keys.len / sizeof(int32_t); e++)
            if (keys[e] == ki) return FLAGGED;
        if (VEC_PUSH(&o->keys, int32_t, ki)) return NOMEM;
        if ((r = push_string(o, C_VALUE, &o->values, v))) return r;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') { c->p++; skip_ws(c); continue; }
        if (c->p < c->end && *c->p == '}') { c->p++; return 0; }
        return FLAGGED;
    }
}

enum { F_TIME = 1, F_SERVICE = 2, F_HOST = 4, F_NAME = 8, F_VALUE = 16, F_UNIT = 32,
       F_ATTRS = 64, F_TYPE = 128 };
#define F_REQUIRED (F_TIME | F_SERVICE | F_NAME | F_VALUE)

#define KEY_IS(s, lit) ((s).n == (Py_ssize_t)sizeof(lit) - 1 && memcmp((s).p, lit, sizeof(lit) - 1) == 0)

static int read_record(cur_t *c, out_t *o, int32_t msg, int32_t elem) {
    if (c->p >= c->end || *c->p != '{') return FLAGGED;
    c->p++;
    skip_ws(c);
    int seen = 0, r;
    int64_t t = 0;
    double value = 0;
    span_t strings[4] = {{"", 0}, {"", 0}, {"", 0}, {"", 0}};
    if (c->p < c->end && *c->p == '}') return FLAGGED; /* no required field */
    for (;;) {
        span_t key;
        int field;
        if ((r = read_string(c, &key))) return r;
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':') return FLAGGED;
        c->p++;
        skip_ws(c);
        if (KEY_IS(key, "time")) { field = F_TIME; r = read_int64(c, &t); }
        else if (KEY_IS(key, "value")) { field = F_VALUE; r = read_double(c, &value); }
        else if (KEY_IS(key, "service.name")) { field = F_SERVICE; r = read_string(c, &strings[0]); }
        else if (KEY_IS(key, "host.name")) { field = F_HOST; r = read_string(c, &strings[1]); }
        else if (KEY_IS(key, "name")) { field = F_NAME; r = read_string(c, &strings[2]); }
        else if (KEY_IS(key, "unit")) { field = F_UNIT; r = read_string(c, &strings[3]); }
        else if (KEY_IS(key, "attributes")) {
            field = F_ATTRS;
            r = (seen & F_ATTRS) ? FLAGGED : read_attributes(c, o);
        } else if (KEY_IS(key, "type")) {
            span_t type;
            field = F_TYPE;
            r = read_string(c, &type);
            if (!r && !KEY_IS(type, "metric")) r = FLAGGED;
        } else return FLAGGED;
        if (r) return r;
        if (seen & field) return FLAGGED;
        seen |= field;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') { c->p++; skip_ws(c); continue; }
        if (c->p < c->end && *c->p == '}') { c->p++; break; }
        return FLAGGED;
    }
    if ((seen & F_REQUIRED) != F_REQUIRED) return FLAGGED;
    if (VEC_PUSH(&o->msg, int32_t, msg) || VEC_PUSH(&o->elem, int32_t, elem) ||
        VEC_PUSH(&o->time, int64_t, t) || VEC_PUSH(&o->value, double, value))
        return NOMEM;
    static const int columns[4] = {C_SERVICE, C_HOST, C_NAME, C_UNIT};
    for (int i = 0; i < 4; i++)
        if ((r = push_string(o, columns[i], &o->idx[i], strings[i]))) return r;
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

PyDoc_STRVAR(scan_metrics_doc,
"scan_metrics(values, max_bytes) -> tuple\n\n"
"Scan a list of message values (bytes) of Tocsin metric JSON. Returns (flagged,\n"
"msg, elem, time, value, service, host, name, unit, offsets, keys, values,\n"
"strings): flagged has a byte per message (1: decode it with the Python path;\n"
"a message over max_bytes or empty is flagged too); msg, elem (int32), time (int64),\n"
"value (float64), the four name columns and the attribute keys and values (int32\n"
"indexes into the lists of strings) and offsets (int32, rows + 1) are raw\n"
"native-endian bytes for the rows of the messages taken, in message order; strings\n"
"holds the distinct strings of service, host, name, unit, key and value.");

static PyObject *scan_metrics(PyObject *self, PyObject *args) {
    PyObject *values;
    Py_ssize_t max_bytes;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &values, &max_bytes)) return NULL;
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
    out_t o;
    memset(&o, 0, sizeof(o));
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
    if (failed) {
        out_free(&o);
        Py_DECREF(flagged);
        return PyErr_NoMemory();
    }
    PyObject *strings = PyTuple_New(N_STRINGS);
    if (!strings) Py_DECREF(flagged);
    for (int i = 0; strings && i < N_STRINGS; i++) {
        PyObject *list = string_list(&o.strings[i]);
        if (!list) { Py_CLEAR(strings); Py_DECREF(flagged); break; }
        PyTuple_SET_ITEM(strings, i, list);
    }
    PyObject *result = strings ? Py_BuildValue(
        "(NNNNNNNNNNNNN)", flagged, vec_bytes(&o.msg), vec_bytes(&o.elem), vec_bytes(&o.time),
        vec_bytes(&o.value), vec_bytes(&o.idx[0]), vec_bytes(&o.idx[1]), vec_bytes(&o.idx[2]),
        vec_bytes(&o.idx[3]), vec_bytes(&o.offsets), vec_bytes(&o.keys), vec_bytes(&o.values),
        strings) : NULL;  /* "N" hands the references over, on failure too */
    out_free(&o);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_metrics", scan_metrics, METH_VARARGS, scan_metrics_doc},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jsonscan",
    "Tocsin's JSON metric scanner (see pipeline/events/json_scan.py).", -1, methods};

PyMODINIT_FUNC PyInit__jsonscan(void) { return PyModule_Create(&module); }
