/*
 * ci_app.artifacts._speedups: optional native fast paths for the two hottest
 * loops of ingest. The pure-Python code in junit.py / ingest.py is the
 * reference; this module must give exactly the same results (tests compare
 * the two on the whole corpus and on generated reports).
 *
 *  - JUnitParser: streams JUnit XML through expat (the one CPython already
 *    carries, reached through pyexpat's C API capsule, so nothing extra is
 *    linked) and builds the final TestCase objects directly. Anything it does
 *    not mirror exactly (DOCTYPE, namespaces, comments or PIs inside a case,
 *    nested cases, deep nesting, any XML error) raises FallbackError, and the
 *    caller re-reads the file with the lxml reference parser.
 *  - encode_cases: a batch of TestCase objects -> ResultSet JSON lines (UTF-8) plus
 *    the summary counts (what case_to_json and SummaryCounter.add do).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* ---- expat, as exported by pyexpat (see CPython's Include/pyexpat.h) ---- */

typedef struct XML_ParserStruct *XML_Parser;
typedef char XML_Char;
typedef void (*StartHandler)(void *, const XML_Char *, const XML_Char **);
typedef void (*EndHandler)(void *, const XML_Char *);
typedef void (*CharHandler)(void *, const XML_Char *, int);
typedef void (*CommentHandler)(void *, const XML_Char *);
typedef void (*PIHandler)(void *, const XML_Char *, const XML_Char *);
typedef void (*DoctypeHandler)(void *, const XML_Char *, const XML_Char *,
                               const XML_Char *, int);

struct ExpatCAPI {
    char *magic;
    int size;
    int MAJOR_VERSION;
    int MINOR_VERSION;
    int MICRO_VERSION;
    const char *(*ErrorString)(int code);
    int (*GetErrorCode)(XML_Parser parser);
    unsigned long (*GetErrorColumnNumber)(XML_Parser parser);
    unsigned long (*GetErrorLineNumber)(XML_Parser parser);
    int (*Parse)(XML_Parser parser, const char *s, int len, int isFinal);
    XML_Parser (*ParserCreate_MM)(const XML_Char *encoding, const void *memsuite,
                                  const XML_Char *namespaceSeparator);
    void (*ParserFree)(XML_Parser parser);
    void (*SetCharacterDataHandler)(XML_Parser parser, CharHandler handler);
    void (*SetCommentHandler)(XML_Parser parser, CommentHandler handler);
    void (*SetDefaultHandlerExpand)(XML_Parser parser, void *handler);
    void (*SetElementHandler)(XML_Parser parser, StartHandler start, EndHandler end);
    void (*SetNamespaceDeclHandler)(XML_Parser parser, void *start, void *end);
    void (*SetProcessingInstructionHandler)(XML_Parser parser, PIHandler handler);
    void (*SetUnknownEncodingHandler)(XML_Parser parser, void *handler, void *data);
    void (*SetUserData)(XML_Parser parser, void *userData);
    void (*SetStartDoctypeDeclHandler)(XML_Parser parser, DoctypeHandler start);
};

static struct ExpatCAPI *expat = NULL;

/* ---- configuration handed over by Python (native.configure) ---- */

enum { F_ID, F_NAME, F_OUTCOME, F_SUITE, F_CLASSNAME, F_FILE, F_LINE, F_DURATION,
       F_MESSAGE, F_DETAILS, F_STDOUT, F_STDERR, F_RETRIES, F_FLAKY, N_FIELDS };
static const char *field_names[N_FIELDS] = {
    "id", "name", "outcome", "suite", "classname", "file", "line", "duration_s",
    "message", "details", "stdout", "stderr", "retries", "flaky"};

enum { O_SKIPPED, O_PASSED, O_FAILED, O_ERROR, N_OUTCOMES }; /* = severity */
static const char *outcome_json[N_OUTCOMES] = {"\"skipped\"", "\"passed\"", "\"failed\"",
                                               "\"error\""};

static int configured = 0;
static PyTypeObject *case_type = NULL;
static Py_ssize_t field_offset[N_FIELDS];
static PyObject *outcomes[N_OUTCOMES];
static PyObject *status_map = NULL;   /* lower-case status word -> Outcome (the rulebook) */
static PyObject *line_fn = NULL;      /* parse_line(value, zero_based) */
static PyObject *duration_fn = NULL;  /* parse_duration(value) */
static PyObject *prefix_fn = NULL;    /* pytest_node_prefix(classname, file) */
static PyObject *module_fn = NULL;    /* pytest_module_id(name, file) */
static PyObject *merge_fn = NULL;     /* merge_rerun(previous, final) */
static PyObject *case_json_fn = NULL; /* case_to_json(case), for foreign objects */
static PyObject *FallbackError = NULL;

static PyObject *s_nl, *s_nlnl, *s_colons, *s_unnamed, *s_lower;

/* ---- the rulebook (junit_rules.RULES), copied into C strings by configure ---- */

#define MAX_NAMES 16
typedef struct {
    int n;
    char *name[MAX_NAMES];
    int value[MAX_NAMES];
} Names;

/* case attribute slots: junit_rules.CASE_ATTRIBUTES, in this order */
enum { A_NAME, A_CLASSNAME, A_FILE, A_LINE, A_TIME, A_STATUS, A_FAILURE, A_ERROR, N_ATTRS };
static const char *attr_keys[N_ATTRS] = {"name", "classname", "file", "line",
                                         "time", "status", "failure", "error"};
#define MAX_ALIASES 4

static struct {
    char *case_tag, *suite_tag, *trace_tag, *stdout_tag, *stderr_tag, *property_tag;
    char *message_attr, *suite_name_attr, *pytest_suite_name, *pytest_any_name, *go_property;
    char *node_absent;
    Names result_tags;  /* tag -> outcome index */
    Names retry_tags;
    Names suite_file_attrs;
    Names declared_attrs;
    Names node_attrs;
    Names case_attrs;   /* alias -> slot * MAX_ALIASES + alias index */
    int n_aliases[N_ATTRS];
} R;

static int
outcome_of(PyObject *o)
{
    for (int i = 0; i < N_OUTCOMES; i++) {
        if (o == outcomes[i])
            return i;
    }
    PyErr_SetString(PyExc_ValueError, "rules: unknown outcome");
    return -1;
}

static char *
copy_str(PyObject *o)
{
    const char *u = PyUnicode_Check(o) ? PyUnicode_AsUTF8(o) : NULL;
    if (u == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "rules: str expected");
        return NULL;
    }
    size_t n = strlen(u) + 1;
    char *c = PyMem_Malloc(n);
    if (c == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(c, u, n);
    return c;
}

static char *
rule_str(PyObject *rules, const char *key)
{
    PyObject *o = PyMapping_GetItemString(rules, key);
    if (o == NULL)
        return NULL;
    char *c = copy_str(o);
    Py_DECREF(o);
    return c;
}

/* A sequence of names (values 0..n-1), or a mapping name -> Outcome (values: outcome index). */
static int
rule_names(PyObject *rules, const char *key, Names *out, int outcome_values)
{
    PyObject *o = PyMapping_GetItemString(rules, key);
    if (o == NULL)
        return -1;
    PyObject *keys = outcome_values ? PyMapping_Keys(o) : PySequence_List(o);
    if (keys == NULL) {
        Py_DECREF(o);
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(keys);
    int rc = -1;
    if (n > MAX_NAMES) {
        PyErr_Format(PyExc_ValueError, "rules: too many %s", key);
        goto done;
    }
    out->n = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        char *c = copy_str(k);
        if (c == NULL)
            goto done;
        int value = (int)i;
        if (outcome_values) {
            PyObject *v = PyObject_GetItem(o, k);
            value = v == NULL ? -1 : outcome_of(v);
            Py_XDECREF(v);
            if (value < 0) {
                PyMem_Free(c);
                goto done;
            }
        }
        out->name[out->n] = c;
        out->value[out->n] = value;
        out->n++;
    }
    rc = 0;
done:
    Py_DECREF(keys);
    Py_DECREF(o);
    return rc;
}

static int
rule_case_attrs(PyObject *rules)
{
    PyObject *o = PyMapping_GetItemString(rules, "case_attributes");
    if (o == NULL)
        return -1;
    R.case_attrs.n = 0;
    for (int slot = 0; slot < N_ATTRS; slot++) {
        PyObject *aliases = PyMapping_GetItemString(o, attr_keys[slot]);
        PyObject *list = aliases == NULL ? NULL : PySequence_List(aliases);
        Py_XDECREF(aliases);
        if (list == NULL) {
            Py_DECREF(o);
            return -1;
        }
        Py_ssize_t n = PyList_GET_SIZE(list);
        if (n < 1 || n > MAX_ALIASES || R.case_attrs.n + n > MAX_NAMES) {
            Py_DECREF(list);
            Py_DECREF(o);
            PyErr_SetString(PyExc_ValueError, "rules: bad case_attributes");
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            char *c = copy_str(PyList_GET_ITEM(list, i));
            if (c == NULL) {
                Py_DECREF(list);
                Py_DECREF(o);
                return -1;
            }
            R.case_attrs.name[R.case_attrs.n] = c;
            R.case_attrs.value[R.case_attrs.n] = slot * MAX_ALIASES + (int)i;
            R.case_attrs.n++;
        }
        R.n_aliases[slot] = (int)n;
        Py_DECREF(list);
    }
    Py_DECREF(o);
    return 0;
}

static int
names_index(const Names *names, const char *s)
{
    for (int i = 0; i < names->n; i++) {
        if (strcmp(names->name[i], s) == 0)
            return i;
    }
    return -1;
}

#define SLOT(obj, f) (*(PyObject **)((char *)(obj) + field_offset[f]))

static PyObject *
configure(PyObject *self, PyObject *args)
{
    PyObject *type, *outs, *rules, *fl, *fd, *fp, *fmod, *fm, *fj;
    if (!PyArg_ParseTuple(args, "OOOOOOOOO", &type, &outs, &rules, &fl, &fd, &fp, &fmod, &fm,
                          &fj))
        return NULL;
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "TestCase type expected");
        return NULL;
    }
    for (int i = 0; i < N_FIELDS; i++) {
        PyObject *descr = PyObject_GetAttrString(type, field_names[i]);
        if (descr == NULL)
            return NULL;
        if (Py_TYPE(descr) != &PyMemberDescr_Type) {
            Py_DECREF(descr);
            PyErr_Format(PyExc_TypeError, "TestCase.%s is not a slot", field_names[i]);
            return NULL;
        }
        PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY)) {
            Py_DECREF(descr);
            PyErr_Format(PyExc_TypeError, "TestCase.%s has an unexpected layout", field_names[i]);
            return NULL;
        }
        field_offset[i] = m->offset;
        Py_DECREF(descr);
    }
    if (!PyTuple_Check(outs) || PyTuple_GET_SIZE(outs) != N_OUTCOMES) {
        PyErr_SetString(PyExc_TypeError, "outcomes: (skipped, passed, failed, error) expected");
        return NULL;
    }
    for (int i = 0; i < N_OUTCOMES; i++) {
        Py_INCREF(PyTuple_GET_ITEM(outs, i));
        Py_XSETREF(outcomes[i], PyTuple_GET_ITEM(outs, i));
    }
    if (configured) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure() was already called");
        return NULL;
    }
    PyObject *smap = PyMapping_GetItemString(rules, "status_outcomes");
    if (smap == NULL)
        return NULL;
    if (!PyDict_Check(smap)) {
        Py_DECREF(smap);
        PyErr_SetString(PyExc_TypeError, "rules: status_outcomes must be a dict");
        return NULL;
    }
    Py_XSETREF(status_map, smap);
    if ((R.case_tag = rule_str(rules, "case_tag")) == NULL ||
        (R.suite_tag = rule_str(rules, "suite_tag")) == NULL ||
        (R.trace_tag = rule_str(rules, "retry_trace_tag")) == NULL ||
        (R.stdout_tag = rule_str(rules, "stdout_tag")) == NULL ||
        (R.stderr_tag = rule_str(rules, "stderr_tag")) == NULL ||
        (R.property_tag = rule_str(rules, "property_tag")) == NULL ||
        (R.message_attr = rule_str(rules, "message_attribute")) == NULL ||
        (R.suite_name_attr = rule_str(rules, "suite_name_attribute")) == NULL ||
        (R.pytest_suite_name = rule_str(rules, "pytest_suite_name")) == NULL ||
        (R.pytest_any_name = rule_str(rules, "pytest_any_name")) == NULL ||
        (R.go_property = rule_str(rules, "go_property")) == NULL ||
        (R.node_absent = rule_str(rules, "node_suite_absent")) == NULL ||
        rule_names(rules, "result_tags", &R.result_tags, 1) < 0 ||
        rule_names(rules, "retry_tags", &R.retry_tags, 0) < 0 ||
        rule_names(rules, "suite_file_attributes", &R.suite_file_attrs, 0) < 0 ||
        rule_names(rules, "declared_attributes", &R.declared_attrs, 0) < 0 ||
        rule_names(rules, "node_suite_attributes", &R.node_attrs, 0) < 0 ||
        rule_case_attrs(rules) < 0)
        return NULL; /* configure is called once; a half-filled table is never used */
    if (R.declared_attrs.n != 6) {
        PyErr_SetString(PyExc_ValueError, "rules: six declared_attributes expected");
        return NULL;
    }
    Py_INCREF(type);
    Py_XSETREF(case_type, (PyTypeObject *)type);
    Py_INCREF(fl);
    Py_XSETREF(line_fn, fl);
    Py_INCREF(fd);
    Py_XSETREF(duration_fn, fd);
    Py_INCREF(fp);
    Py_XSETREF(prefix_fn, fp);
    Py_INCREF(fmod);
    Py_XSETREF(module_fn, fmod);
    Py_INCREF(fm);
    Py_XSETREF(merge_fn, fm);
    Py_INCREF(fj);
    Py_XSETREF(case_json_fn, fj);
    configured = 1;
    Py_RETURN_NONE;
}

/* ---- small helpers ---- */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int
buf_grow(Buf *b, Py_ssize_t need)
{
    if (b->len + need <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + need) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *p = PyMem_Realloc(b->data, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

static inline int
buf_put(Buf *b, const char *s, Py_ssize_t n)
{
    if (b->len + n > b->cap && buf_grow(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

static inline int
buf_puts(Buf *b, const char *s)
{
    return buf_put(b, s, (Py_ssize_t)strlen(s));
}

static PyObject *
str_of(const char *s)
{
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), NULL);
}

/* Python truthiness of an optional str. */
static inline int
nonempty(PyObject *s)
{
    return s != NULL && s != Py_None && PyUnicode_GET_LENGTH(s) > 0;
}

/* ``body and body.strip()``: any character str.strip() would keep. */
static int
has_content(PyObject *s)
{
    if (s == NULL || s == Py_None)
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i)))
            return 1;
    }
    return 0;
}

/* ---- JUnitParser ---- */

/* The last value of one attribute, kept as a str: consecutive cases usually share
 * their classname and file, so they also share one str (and its cached hash). */
typedef struct {
    Buf bytes;
    PyObject *obj;
} LastStr;

static PyObject *
last_str(LastStr *c, const char *v)
{
    Py_ssize_t n = (Py_ssize_t)strlen(v);
    if (c->obj != NULL && n == c->bytes.len && memcmp(c->bytes.data, v, n) == 0) {
        Py_INCREF(c->obj);
        return c->obj;
    }
    PyObject *s = PyUnicode_DecodeUTF8(v, n, NULL);
    if (s == NULL)
        return NULL;
    c->bytes.len = 0;
    if (buf_put(&c->bytes, v, n) < 0) {
        Py_DECREF(s);
        return NULL;
    }
    Py_INCREF(s);
    Py_XSETREF(c->obj, s);
    return s;
}

static void
last_str_free(LastStr *c)
{
    Py_CLEAR(c->obj);
    PyMem_Free(c->bytes.data);
    c->bytes = (Buf){0};
}

enum { K_OTHER, K_SUITE };
enum { C_OTHER, C_RESULT, C_RETRY, C_STDOUT, C_STDERR };
#define MAX_DEPTH 200
#define MAX_PREFIXES 64

typedef struct {
    PyObject *name;   /* suite name (testsuite only) or NULL */
    PyObject *file;   /* testsuite file/filepath or NULL */
    PyObject *seen;   /* id_key(id) -> count, for the cases held here */
    int pytest;
    long listed, listed_skipped; /* cases read here (for declared-but-unlisted skips) */
} Suite;

typedef struct {
    int kind;
    int pytest;       /* this element or an ancestor marks a pytest report */
    int held_cases;
    int child_suite;
    PyObject *decl;   /* testsuite: (tests, failures, errors, skipped, disabled, time) */
    PyObject *name;
    PyObject *file;
    Suite *suite;     /* created when the first case below it is seen */
} Frame;

typedef struct {
    PyObject_HEAD
    XML_Parser xp;
    PyObject *clip;
    PyObject *out;       /* finished cases of the current feed */
    PyObject *pending;   /* last case, held back for pytest rerun merging */
    PyObject *declared;  /* list of declared-count tuples, in document order */
    PyObject *id_prefix; /* classname/suite -> "prefix::" */
    PyObject *pytest_prefix; /* (classname, file) -> node-id prefix or None */
    int failed;          /* a Python exception is set */
    const char *bail;    /* reason to hand over to the reference parser */
    int finished;
    int depth;
    Frame frames[MAX_DEPTH + 2];
    Suite root_suite;
    Suite *cur_suite;
    /* prefixes declared with xmlns:p, by depth */
    int n_prefixes;
    int prefix_depth[MAX_PREFIXES];
    char prefix_name[MAX_PREFIXES][32];
    LastStr last_classname, last_file;
    PyObject *last_key[2], *last_prefix; /* (classname, file) -> id prefix, last case */
    /* the open test case */
    int in_case, case_depth;
    PyObject *c_name, *c_classname, *c_file, *c_status, *c_failure, *c_error, *c_line;
    double c_duration;
    int c_outcome, c_severity, c_got_result, c_retries;
    PyObject *c_messages, *c_details, *c_stdout, *c_stderr;
    Suite *c_suite;
    /* the open direct child of the case */
    int ch_kind, ch_outcome, st_state;
    PyObject *ch_message;
    Buf text, st_text;
} JUnitParser;

/* MurmurHash3 x64 128 (public domain, Austin Appleby); the tail is read zero-padded,
   which mixes the same as the reference's switch (a zero word changes nothing). */
static inline uint64_t
rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t
fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static void
murmur3_128(const unsigned char *data, Py_ssize_t len, uint64_t seed, uint64_t out[2])
{
    const uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
    uint64_t h1 = seed, h2 = seed, k1, k2;
    Py_ssize_t i, nblocks = len / 16;
    unsigned char tail[16];
    for (i = 0; i <= nblocks; i++) {
        const unsigned char *block = data + i * 16;
        if (i == nblocks) {
            memset(tail, 0, sizeof tail);
            memcpy(tail, block, (size_t)(len & 15));
            block = tail;
        }
        memcpy(&k1, block, 8);
        memcpy(&k2, block + 8, 8);
        k1 *= c1; k1 = rotl64(k1, 31); k1 *= c2; h1 ^= k1;
        k2 *= c2; k2 = rotl64(k2, 33); k2 *= c1; h2 ^= k2;
        if (i == nblocks) {
            break;
        }
        h1 = rotl64(h1, 27); h1 += h2; h1 = h1 * 5 + 0x52dce729;
        h2 = rotl64(h2, 31); h2 += h1; h2 = h2 * 5 + 0x38495ab5;
    }
    h1 ^= (uint64_t)len;
    h2 ^= (uint64_t)len;
    h1 += h2; h2 += h1;
    h1 = fmix64(h1); h2 = fmix64(h2);
    h1 += h2; h2 += h1;
    out[0] = h1;
    out[1] = h2;
}

/* The key of Suite.seen: a 128-bit digest of the id (its code units, seeded with their
   width, so it is a function of the string). The dict would otherwise keep every id of a
   suite alive until the suite ends: ~360 bytes each for the 3M-case benchmark
   (bench/ingest_memory.py) against 64 here. Two distinct ids of a suite share a key, and
   the second is numbered as a rerun, with probability ~n^2 / 2^129. */
static PyObject *
id_key(PyObject *id)
{
    uint64_t h[2];
    unsigned char bytes[16];
    int kind = PyUnicode_KIND(id);
    murmur3_128((const unsigned char *)PyUnicode_DATA(id), PyUnicode_GET_LENGTH(id) * kind,
                (uint64_t)kind, h);
    memcpy(bytes, h, 16);
    return PyBytes_FromStringAndSize((const char *)bytes, 16);
}

static void
suite_free(Suite *s)
{
    Py_CLEAR(s->name);
    Py_CLEAR(s->file);
    Py_CLEAR(s->seen);
}

static void
frame_clear(Frame *f)
{
    Py_CLEAR(f->decl);
    Py_CLEAR(f->name);
    Py_CLEAR(f->file);
    if (f->suite != NULL) {
        suite_free(f->suite);
        PyMem_Free(f->suite);
        f->suite = NULL;
    }
}

static void
case_clear(JUnitParser *p)
{
    Py_CLEAR(p->c_name);
    Py_CLEAR(p->c_classname);
    Py_CLEAR(p->c_file);
    Py_CLEAR(p->c_status);
    Py_CLEAR(p->c_failure);
    Py_CLEAR(p->c_error);
    Py_CLEAR(p->c_line);
    Py_CLEAR(p->c_messages);
    Py_CLEAR(p->c_details);
    Py_CLEAR(p->c_stdout);
    Py_CLEAR(p->c_stderr);
    Py_CLEAR(p->ch_message);
}

static inline int
stopped(JUnitParser *p)
{
    return p->failed || p->bail != NULL;
}

static const char *
attr(const XML_Char **atts, const char *key)
{
    for (; atts[0] != NULL; atts += 2) {
        if (strcmp(atts[0], key) == 0)
            return atts[1];
    }
    return NULL;
}

static PyObject *
attr_str(const XML_Char **atts, const char *key, int *err)
{
    const char *v = attr(atts, key);
    if (v == NULL)
        return NULL;
    PyObject *s = str_of(v);
    if (s == NULL)
        *err = 1;
    return s;
}

/* Namespace handling the reference parser (lxml) would do differently: hand over. */
static int
check_names(JUnitParser *p, const XML_Char *name, const XML_Char **atts)
{
    if (strchr(name, ':') != NULL) {
        p->bail = "namespaced element";
        return -1;
    }
    for (const XML_Char **a = atts; a[0] != NULL; a += 2) {
        const char *k = a[0];
        if (k[0] != 'x' || strncmp(k, "xmlns", 5) != 0)
            continue;
        if (k[5] == '\0') {
            p->bail = "default namespace";
            return -1;
        }
        if (k[5] == ':') {
            if (a[1][0] == '\0' || strlen(k + 6) >= 32 || p->n_prefixes >= MAX_PREFIXES) {
                p->bail = "namespace declaration";
                return -1;
            }
            strcpy(p->prefix_name[p->n_prefixes], k + 6);
            p->prefix_depth[p->n_prefixes] = p->depth;
            p->n_prefixes++;
        }
    }
    for (const XML_Char **a = atts; a[0] != NULL; a += 2) {
        const char *k = a[0];
        const char *colon = strchr(k, ':');
        if (colon == NULL || strncmp(k, "xmlns:", 6) == 0)
            continue;
        size_t n = (size_t)(colon - k);
        if (n == 3 && strncmp(k, "xml", 3) == 0)
            continue;
        int found = 0;
        for (int i = 0; i < p->n_prefixes && !found; i++)
            found = strlen(p->prefix_name[i]) == n && strncmp(p->prefix_name[i], k, n) == 0;
        if (!found) {
            p->bail = "undeclared namespace prefix";
            return -1;
        }
    }
    return 0;
}

/* parse_duration(el.get("time") or el.get("duration")) */
static int
parse_duration(const char *v, double *out)
{
    if (v == NULL || v[0] == '\0') {
        *out = 0.0;
        return 0;
    }
    const char *c = v;
    int digits = 0, dots = 0;
    for (; *c; c++) {
        if (*c >= '0' && *c <= '9')
            digits++;
        else if (*c == '.')
            dots++;
        else
            break;
    }
    if (*c == '\0' && digits > 0 && dots <= 1 && c - v < 64) {
        char *end = NULL;
        double d = PyOS_string_to_double(v, &end, NULL);
        if (d == -1.0 && PyErr_Occurred())
            return -1;
        if (end != NULL && *end == '\0') {
            *out = d;
            return 0;
        }
    }
    PyObject *s = str_of(v);
    if (s == NULL)
        return -1;
    PyObject *r = PyObject_CallOneArg(duration_fn, s);
    Py_DECREF(s);
    if (r == NULL)
        return -1;
    *out = PyFloat_AsDouble(r);
    Py_DECREF(r);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* parse_line(el.get("line"), zero_based) */
static PyObject *
parse_line(const char *v, int zero_based)
{
    if (v == NULL)
        Py_RETURN_NONE;
    long n = 0;
    const char *c = v;
    for (; *c >= '0' && *c <= '9' && c - v < 12; c++)
        n = n * 10 + (*c - '0');
    if (*c == '\0' && c != v && c - v < 12)
        return PyLong_FromLong(n + (zero_based ? 1 : 0));
    PyObject *s = str_of(v);
    if (s == NULL)
        return NULL;
    PyObject *r = PyObject_CallFunctionObjArgs(line_fn, s, zero_based ? Py_True : Py_False, NULL);
    Py_DECREF(s);
    return r;
}

static Suite *
frame_suite(JUnitParser *p, Frame *f)
{
    if (f->suite != NULL)
        return f->suite;
    Suite *s = PyMem_Calloc(1, sizeof(Suite));
    if (s == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    s->seen = PyDict_New();
    if (s->seen == NULL) {
        PyMem_Free(s);
        return NULL;
    }
    if (f->kind == K_SUITE) {
        Py_XINCREF(f->name);
        s->name = f->name;
        Py_XINCREF(f->file);
        s->file = f->file;
    }
    s->pytest = f->pytest;
    f->suite = s;
    return s;
}

static int
declare(JUnitParser *p, Frame *f)
{
    return f->decl == NULL ? 0 : PyList_Append(p->declared, f->decl);
}

static void
start_case(JUnitParser *p, const XML_Char **atts)
{
    Frame *parent = p->depth > 1 ? &p->frames[p->depth - 1] : NULL;
    if (parent != NULL) {
        Suite *s = frame_suite(p, parent);
        if (s == NULL)
            goto fail;
        if (!parent->held_cases) {
            parent->held_cases = 1;
            if (parent->kind == K_SUITE && declare(p, parent) < 0)
                goto fail;
        }
        p->cur_suite = s;
    }
    p->in_case = 1;
    p->case_depth = p->depth;
    p->c_suite = p->cur_suite;
    /* one pass over the attributes (first occurrence wins, as el.get() reads), then per
     * slot the first alias with a non-empty value, else the last alias's (``a or b``) */
    const char *vals[N_ATTRS][MAX_ALIASES];
    memset(vals, 0, sizeof vals);
    for (const XML_Char **a = atts; a[0] != NULL; a += 2) {
        const char *k = a[0];
        for (int i = 0; i < R.case_attrs.n; i++) {
            const char *want = R.case_attrs.name[i];
            if (want[0] == k[0] && strcmp(want, k) == 0) {
                int v = R.case_attrs.value[i];
                const char **slot = &vals[v / MAX_ALIASES][v % MAX_ALIASES];
                if (*slot == NULL)
                    *slot = a[1];
                break;
            }
        }
    }
    const char *chosen[N_ATTRS];
    for (int slot = 0; slot < N_ATTRS; slot++) {
        int n = R.n_aliases[slot];
        chosen[slot] = vals[slot][n - 1];
        for (int i = 0; i < n; i++) {
            if (vals[slot][i] != NULL && vals[slot][i][0] != '\0') {
                chosen[slot] = vals[slot][i];
                break;
            }
        }
    }
    const char *name = chosen[A_NAME], *classname = chosen[A_CLASSNAME], *file = chosen[A_FILE],
               *status = chosen[A_STATUS], *failure = chosen[A_FAILURE],
               *error = chosen[A_ERROR], *line = chosen[A_LINE], *time = chosen[A_TIME];
    if ((name != NULL && (p->c_name = str_of(name)) == NULL) ||
        (classname != NULL && (p->c_classname = last_str(&p->last_classname, classname)) == NULL) ||
        (file != NULL && (p->c_file = last_str(&p->last_file, file)) == NULL) ||
        (status != NULL && (p->c_status = str_of(status)) == NULL) ||
        (failure != NULL && (p->c_failure = str_of(failure)) == NULL) ||
        (error != NULL && (p->c_error = str_of(error)) == NULL))
        goto fail;
    p->c_line = parse_line(line, p->c_suite->pytest);
    if (p->c_line == NULL)
        goto fail;
    if (parse_duration(time, &p->c_duration) < 0)
        goto fail;
    p->c_outcome = O_PASSED;
    p->c_severity = -1;
    p->c_got_result = 0;
    p->c_retries = 0;
    return;
fail:
    p->failed = 1;
}

static int
list_add(PyObject **list, PyObject *item)
{
    if (*list == NULL) {
        *list = PyList_New(0);
        if (*list == NULL)
            return -1;
    }
    return PyList_Append(*list, item);
}

static PyObject *
buf_text(Buf *b)
{
    if (b->len == 0)
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(b->data, b->len, NULL);
}

static void
end_child(JUnitParser *p)
{
    PyObject *body = NULL;
    int kind = p->ch_kind;
    if (kind == C_OTHER)
        goto done;
    if (kind == C_RESULT) {
        p->c_got_result = 1;
        if (p->ch_outcome > p->c_severity) {
            p->c_outcome = p->ch_outcome;
            p->c_severity = p->ch_outcome;
        }
        if (nonempty(p->ch_message) && list_add(&p->c_messages, p->ch_message) < 0)
            goto fail;
        body = buf_text(&p->text);
        if (body == NULL)
            goto fail;
        if (has_content(body) && list_add(&p->c_details, body) < 0)
            goto fail;
    }
    else if (kind == C_RETRY) {
        p->c_retries++;
        if (p->c_details == NULL || PyList_GET_SIZE(p->c_details) == 0) {
            /* child.findtext("stackTrace") or _text(child) */
            body = p->st_text.len > 0 ? buf_text(&p->st_text) : buf_text(&p->text);
            if (body == NULL)
                goto fail;
            if (nonempty(p->ch_message) && list_add(&p->c_messages, p->ch_message) < 0)
                goto fail;
            if (has_content(body) && list_add(&p->c_details, body) < 0)
                goto fail;
        }
    }
    else {
        body = buf_text(&p->text);
        if (body == NULL)
            goto fail;
        if (kind == C_STDOUT) {
            Py_INCREF(body);
            Py_XSETREF(p->c_stdout, body);
        }
        else {
            Py_INCREF(body);
            Py_XSETREF(p->c_stderr, body);
        }
    }
done:
    Py_XDECREF(body);
    Py_CLEAR(p->ch_message);
    return;
fail:
    Py_XDECREF(body);
    Py_CLEAR(p->ch_message);
    p->failed = 1;
}

static PyObject *
clipped(JUnitParser *p, PyObject *text)
{
    if (text == NULL || text == Py_None)
        Py_RETURN_NONE;
    return PyObject_CallOneArg(p->clip, text);
}

static PyObject *
joined(JUnitParser *p, PyObject *sep, PyObject *list)
{
    if (list == NULL || PyList_GET_SIZE(list) == 0)
        Py_RETURN_NONE;
    PyObject *s = PyUnicode_Join(sep, list);
    if (s == NULL)
        return NULL;
    PyObject *r = clipped(p, s);
    Py_DECREF(s);
    return r;
}

static PyObject *
case_id(JUnitParser *p, Suite *suite, PyObject *classname, PyObject *name)
{
    PyObject *prefix;
    if (suite->pytest) {
        /* pytest_node_id(classname, name, file) == prefix + "::" + name */
        PyObject *file = p->c_file != NULL ? p->c_file : Py_None;
        if (!nonempty(classname)) /* a whole module's report: pytest_module_id */
            return PyObject_CallFunctionObjArgs(module_fn, name, file, NULL);
        PyObject *cls = classname;
        if (p->last_prefix != NULL && p->last_key[0] == cls && p->last_key[1] == file) {
            prefix = p->last_prefix;
            goto concat;
        }
        PyObject *key = PyTuple_Pack(2, cls, file);
        if (key == NULL)
            return NULL;
        prefix = PyDict_GetItemWithError(p->pytest_prefix, key);
        if (prefix == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(key);
                return NULL;
            }
            PyObject *bare = PyObject_CallFunctionObjArgs(prefix_fn, cls, file, NULL);
            if (bare == NULL) {
                Py_DECREF(key);
                return NULL;
            }
            prefix = bare == Py_None ? Py_None : PyUnicode_Concat(bare, s_colons);
            if (prefix == Py_None)
                Py_INCREF(prefix);
            Py_DECREF(bare);
            if (prefix == NULL) {
                Py_DECREF(key);
                return NULL;
            }
            if (PyDict_GET_SIZE(p->pytest_prefix) > 100000)
                PyDict_Clear(p->pytest_prefix);
            int rc = PyDict_SetItem(p->pytest_prefix, key, prefix);
            Py_DECREF(prefix); /* the dict holds it */
            if (rc < 0) {
                Py_DECREF(key);
                return NULL;
            }
        }
        Py_DECREF(key);
        Py_INCREF(cls);
        Py_XSETREF(p->last_key[0], cls);
        Py_INCREF(file);
        Py_XSETREF(p->last_key[1], file);
        Py_INCREF(prefix);
        Py_XSETREF(p->last_prefix, prefix);
    }
    else {
        /* make_id(classname, name, suite): (classname or suite) + "::" + name */
        PyObject *bare = nonempty(classname) ? classname
                         : nonempty(suite->name) ? suite->name
                                                 : NULL;
        if (bare == NULL)
            prefix = Py_None;
        else {
            prefix = PyDict_GetItemWithError(p->id_prefix, bare);
            if (prefix == NULL) {
                if (PyErr_Occurred())
                    return NULL;
                prefix = PyUnicode_Concat(bare, s_colons);
                if (prefix == NULL)
                    return NULL;
                if (PyDict_GET_SIZE(p->id_prefix) > 100000)
                    PyDict_Clear(p->id_prefix);
                int rc = PyDict_SetItem(p->id_prefix, bare, prefix);
                Py_DECREF(prefix);
                if (rc < 0)
                    return NULL;
            }
        }
    }
concat:
    if (prefix == Py_None) {
        Py_INCREF(name);
        return name;
    }
    return PyUnicode_Concat(prefix, name);
}

static PyObject *
new_case(PyObject *values[N_FIELDS])
{
    PyObject *obj = case_type->tp_alloc(case_type, 0);
    if (obj == NULL)
        return NULL;
    for (int i = 0; i < N_FIELDS; i++) {
        SLOT(obj, i) = values[i]; /* steals */
        values[i] = NULL;
    }
    /* Only strings, numbers and the Outcome members: never part of a cycle. */
    if (PyObject_GC_IsTracked(obj))
        PyObject_GC_UnTrack(obj);
    return obj;
}

static void
end_case(JUnitParser *p)
{
    PyObject *v[N_FIELDS] = {NULL};
    PyObject *classname = p->c_classname, *name = p->c_name;
    Suite *suite = p->c_suite;
    p->in_case = 0;
    if (name == NULL && classname == NULL)
        goto done; /* no identity at all: dropped, like the reference */
    if (nonempty(name))
        Py_INCREF(name);
    else if (nonempty(classname)) {
        name = classname;
        Py_INCREF(name);
    }
    else {
        name = s_unnamed;
        Py_INCREF(name);
    }
    v[F_NAME] = name;
    int outcome = p->c_outcome;
    if (!p->c_got_result) {
        if (nonempty(p->c_status)) {
            PyObject *low = PyObject_CallMethodNoArgs(p->c_status, s_lower);
            if (low == NULL)
                goto fail;
            PyObject *mapped = PyDict_GetItemWithError(status_map, low);
            if (mapped == NULL && PyErr_Occurred()) {
                Py_DECREF(low);
                goto fail;
            }
            if (mapped != NULL) {
                int o = outcome_of(mapped);
                if (o < 0) {
                    Py_DECREF(low);
                    goto fail;
                }
                outcome = o;
            }
            Py_DECREF(low);
        }
        if (p->c_failure != NULL) {
            outcome = O_FAILED;
            if (list_add(&p->c_messages, p->c_failure) < 0)
                goto fail;
        }
        if (p->c_error != NULL) {
            outcome = O_ERROR;
            if (list_add(&p->c_messages, p->c_error) < 0)
                goto fail;
        }
    }
    v[F_ID] = case_id(p, suite, classname, name);
    if (v[F_ID] == NULL)
        goto fail;
    v[F_OUTCOME] = outcomes[outcome];
    Py_INCREF(v[F_OUTCOME]);
    v[F_SUITE] = suite->name != NULL ? suite->name : Py_None;
    Py_INCREF(v[F_SUITE]);
    v[F_CLASSNAME] = classname != NULL ? classname : Py_None;
    Py_INCREF(v[F_CLASSNAME]);
    v[F_FILE] = nonempty(p->c_file) ? p->c_file : suite->file != NULL ? suite->file : Py_None;
    Py_INCREF(v[F_FILE]);
    v[F_LINE] = p->c_line;
    Py_INCREF(v[F_LINE]);
    v[F_DURATION] = PyFloat_FromDouble(p->c_duration);
    if (v[F_DURATION] == NULL)
        goto fail;
    if ((v[F_MESSAGE] = joined(p, s_nl, p->c_messages)) == NULL)
        goto fail;
    if ((v[F_DETAILS] = joined(p, s_nlnl, p->c_details)) == NULL)
        goto fail;
    if ((v[F_STDOUT] = clipped(p, p->c_stdout)) == NULL)
        goto fail;
    if ((v[F_STDERR] = clipped(p, p->c_stderr)) == NULL)
        goto fail;
    v[F_RETRIES] = PyLong_FromLong(p->c_retries);
    if (v[F_RETRIES] == NULL)
        goto fail;
    v[F_FLAKY] = (p->c_retries > 0 && outcome == O_PASSED) ? Py_True : Py_False;
    Py_INCREF(v[F_FLAKY]);
    PyObject *c = new_case(v);
    if (c == NULL)
        goto fail;
    suite->listed++;
    suite->listed_skipped += outcome == O_SKIPPED;

    /* pytest-rerunfailures merging and duplicate ids, as in junit._iter_cases */
    if (p->pending != NULL) {
        if (suite->pytest) {
            int same = PyObject_RichCompareBool(SLOT(p->pending, F_ID), SLOT(c, F_ID), Py_EQ);
            if (same < 0) {
                Py_DECREF(c);
                goto fail;
            }
            if (same) {
                PyObject *merged = PyObject_CallFunctionObjArgs(merge_fn, p->pending, c, NULL);
                Py_DECREF(c);
                if (merged == NULL)
                    goto fail;
                Py_SETREF(p->pending, merged);
                goto done;
            }
        }
        int rc = PyList_Append(p->out, p->pending);
        Py_CLEAR(p->pending);
        if (rc < 0) {
            Py_DECREF(c);
            goto fail;
        }
    }
    PyObject *one = PyLong_FromLong(1);
    PyObject *key = one == NULL ? NULL : id_key(SLOT(c, F_ID));
    Py_ssize_t known = PyDict_GET_SIZE(suite->seen);
    PyObject *prev = key == NULL ? NULL : PyDict_SetDefault(suite->seen, key, one);
    Py_XDECREF(one);
    if (prev == NULL) {
        Py_XDECREF(key);
        Py_DECREF(c);
        goto fail;
    }
    if (PyDict_GET_SIZE(suite->seen) == known) { /* seen before */
        long n = PyLong_AsLong(prev) + 1;
        PyObject *count = PyLong_FromLong(n);
        if (count == NULL || PyDict_SetItem(suite->seen, key, count) < 0) {
            Py_XDECREF(count);
            Py_DECREF(key);
            Py_DECREF(c);
            goto fail;
        }
        Py_DECREF(count);
        PyObject *renamed = PyUnicode_FromFormat("%U#%ld", SLOT(c, F_ID), n);
        if (renamed == NULL) {
            Py_DECREF(key);
            Py_DECREF(c);
            goto fail;
        }
        Py_SETREF(SLOT(c, F_ID), renamed);
    }
    Py_DECREF(key);
    p->pending = c;
done:
    case_clear(p);
    return;
fail:
    for (int i = 0; i < N_FIELDS; i++)
        Py_XDECREF(v[i]);
    case_clear(p);
    p->failed = 1;
}

static void
on_start(void *data, const XML_Char *tag, const XML_Char **atts)
{
    JUnitParser *p = data;
    p->depth++;
    if (stopped(p))
        return;
    if (p->depth > MAX_DEPTH) {
        p->bail = "deep nesting";
        return;
    }
    if (check_names(p, tag, atts) < 0)
        return;
    int is_case = strcmp(tag, R.case_tag) == 0;
    int is_suite = !is_case && strcmp(tag, R.suite_tag) == 0;
    if (p->in_case) {
        if (is_case || is_suite) {
            p->bail = "test case or suite inside a test case";
            return;
        }
        int rel = p->depth - p->case_depth;
        if (rel == 1) {
            p->text.len = 0;
            p->st_text.len = 0;
            p->st_state = 0;
            p->ch_kind = C_OTHER;
            int i = names_index(&R.result_tags, tag);
            if (i >= 0) {
                p->ch_kind = C_RESULT;
                p->ch_outcome = R.result_tags.value[i];
            }
            else if (names_index(&R.retry_tags, tag) >= 0)
                p->ch_kind = C_RETRY;
            else if (strcmp(tag, R.stdout_tag) == 0)
                p->ch_kind = C_STDOUT;
            else if (strcmp(tag, R.stderr_tag) == 0)
                p->ch_kind = C_STDERR;
            if (p->ch_kind == C_RESULT || p->ch_kind == C_RETRY) {
                int err = 0;
                p->ch_message = attr_str(atts, R.message_attr, &err);
                if (err)
                    p->failed = 1;
            }
        }
        else if (p->ch_kind == C_RETRY) {
            if (rel == 2 && p->st_state == 0 && strcmp(tag, R.trace_tag) == 0)
                p->st_state = 1;
            else if (rel == 3 && p->st_state == 1)
                p->st_state = 2; /* findtext() reads only the text before a child */
        }
        return;
    }
    Frame *parent = p->depth > 1 ? &p->frames[p->depth - 1] : NULL;
    if (is_case) {
        start_case(p, atts);
        return;
    }
    if (strcmp(tag, R.property_tag) == 0) {
        const char *pname = attr(atts, R.suite_name_attr);
        if (pname != NULL && strcmp(pname, R.go_property) == 0) {
            p->bail = "Go dialect (reruns are merged by the reference reader)";
            return;
        }
    }
    Frame *f = &p->frames[p->depth];
    memset(f, 0, sizeof(Frame));
    const char *name = attr(atts, R.suite_name_attr);
    f->kind = is_suite ? K_SUITE : K_OTHER;
    f->pytest = (parent != NULL && parent->pytest) ||
                (name != NULL && ((is_suite && strcmp(name, R.pytest_suite_name) == 0) ||
                                  strcmp(name, R.pytest_any_name) == 0));
    if (!is_suite)
        return;
    if (parent != NULL) {
        int node = attr(atts, R.node_absent) == NULL;
        for (int i = 0; node && i < R.node_attrs.n; i++)
            node = attr(atts, R.node_attrs.name[i]) != NULL;
        if (node) {
            p->bail = "node dialect (tests with subtests written as suites)";
            return;
        }
        parent->child_suite = 1;
    }
    int err = 0;
    f->name = attr_str(atts, R.suite_name_attr, &err);
    for (int i = 0; !err && i < R.suite_file_attrs.n && !nonempty(f->file); i++) {
        PyObject *alt = attr_str(atts, R.suite_file_attrs.name[i], &err);
        if (alt != NULL || !err) {
            Py_XSETREF(f->file, alt);
        }
    }
    PyObject *decl = err ? NULL : PyTuple_New(6);
    if (decl == NULL) {
        p->failed = 1;
        return;
    }
    for (int i = 0; i < 6; i++) {
        PyObject *v = attr_str(atts, R.declared_attrs.name[i], &err);
        if (err) {
            Py_DECREF(decl);
            p->failed = 1;
            return;
        }
        if (v == NULL) {
            v = Py_None;
            Py_INCREF(v);
        }
        PyTuple_SET_ITEM(decl, i, v);
    }
    f->decl = decl;
}

/* to_int(value): int(value.strip()), or -1 for None or not a number */
static long
decl_int(PyObject *decl, int i, int *err)
{
    PyObject *v = PyTuple_GET_ITEM(decl, i);
    if (v == Py_None)
        return -1;
    PyObject *n = PyLong_FromUnicodeObject(v, 10);
    if (n == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ValueError))
            PyErr_Clear();
        else
            *err = 1;
        return -1;
    }
    long r = PyLong_AsLong(n);
    Py_DECREF(n);
    if (r == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return r;
}

/* Skipped tests a leaf suite declares but does not list (junit_rules: placeholders). */
static int
unlisted_skipped(Frame *f, int *err)
{
    if (f->decl == NULL)
        return 0;
    long tests = decl_int(f->decl, 0, err);
    if (tests < 0)
        return 0;
    long skipped = decl_int(f->decl, 3, err), disabled = decl_int(f->decl, 4, err);
    long declared_skipped = (skipped > 0 ? skipped : 0) + (disabled > 0 ? disabled : 0);
    long listed = f->suite ? f->suite->listed : 0;
    long listed_skipped = f->suite ? f->suite->listed_skipped : 0;
    /* only when the missing cases are exactly the missing skipped ones */
    return tests - listed > 0 && declared_skipped - listed_skipped == tests - listed;
}

static void
on_end(void *data, const XML_Char *tag)
{
    JUnitParser *p = data;
    int depth = p->depth--;
    while (p->n_prefixes > 0 && p->prefix_depth[p->n_prefixes - 1] >= depth)
        p->n_prefixes--;
    if (stopped(p) || depth > MAX_DEPTH)
        return;
    if (p->in_case) {
        int rel = depth - p->case_depth;
        if (rel == 0)
            end_case(p);
        else if (rel == 1)
            end_child(p);
        else if (rel == 2 && p->st_state == 1)
            p->st_state = 2;
        return;
    }
    Frame *f = &p->frames[depth];
    if (f->kind == K_SUITE && !f->child_suite) {
        int err = 0;
        if (unlisted_skipped(f, &err))
            p->bail = "declared skipped tests that are not listed";
        if (err)
            p->failed = 1;
        else if (!f->held_cases && declare(p, f) < 0)
            p->failed = 1;
    }
    frame_clear(f);
}

static void
on_text(void *data, const XML_Char *s, int len)
{
    JUnitParser *p = data;
    if (!p->in_case || stopped(p))
        return;
    int rel = p->depth - p->case_depth;
    if (rel < 1 || p->ch_kind == C_OTHER)
        return;
    if (buf_put(&p->text, s, len) < 0) {
        p->failed = 1;
        return;
    }
    if (p->st_state == 1 && rel == 2 && buf_put(&p->st_text, s, len) < 0)
        p->failed = 1;
}

static void
on_comment(void *data, const XML_Char *text)
{
    JUnitParser *p = data;
    if (p->in_case && !stopped(p))
        p->bail = "comment inside a test case";
}

static void
on_pi(void *data, const XML_Char *target, const XML_Char *text)
{
    JUnitParser *p = data;
    if (p->in_case && !stopped(p))
        p->bail = "processing instruction inside a test case";
}

static void
on_doctype(void *data, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
           int internal)
{
    JUnitParser *p = data;
    if (!stopped(p))
        p->bail = "DOCTYPE";
}

static int
parser_traverse(JUnitParser *p, visitproc visit, void *arg)
{
    Py_VISIT(p->clip);
    Py_VISIT(p->out);
    Py_VISIT(p->pending);
    Py_VISIT(p->declared);
    return 0;
}

static void
parser_release(JUnitParser *p)
{
    if (p->xp != NULL) {
        expat->ParserFree(p->xp);
        p->xp = NULL;
    }
    for (int i = 0; i <= MAX_DEPTH + 1; i++)
        frame_clear(&p->frames[i]);
    suite_free(&p->root_suite);
    case_clear(p);
    last_str_free(&p->last_classname);
    last_str_free(&p->last_file);
    Py_CLEAR(p->last_key[0]);
    Py_CLEAR(p->last_key[1]);
    Py_CLEAR(p->last_prefix);
    PyMem_Free(p->text.data);
    PyMem_Free(p->st_text.data);
    p->text = (Buf){0};
    p->st_text = (Buf){0};
}

static void
parser_dealloc(JUnitParser *p)
{
    PyObject_GC_UnTrack(p);
    parser_release(p);
    Py_CLEAR(p->clip);
    Py_CLEAR(p->out);
    Py_CLEAR(p->pending);
    Py_CLEAR(p->declared);
    Py_CLEAR(p->id_prefix);
    Py_CLEAR(p->pytest_prefix);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static int
parser_clear(JUnitParser *p)
{
    Py_CLEAR(p->clip);
    Py_CLEAR(p->out);
    Py_CLEAR(p->pending);
    Py_CLEAR(p->declared);
    return 0;
}

static PyObject *
parser_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"clip", NULL};
    PyObject *clip;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:JUnitParser", kwlist, &clip))
        return NULL;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure() was not called");
        return NULL;
    }
    JUnitParser *p = (JUnitParser *)type->tp_alloc(type, 0);
    if (p == NULL)
        return NULL;
    Py_INCREF(clip);
    p->clip = clip;
    p->out = PyList_New(0);
    p->declared = PyList_New(0);
    p->id_prefix = PyDict_New();
    p->pytest_prefix = PyDict_New();
    p->root_suite.seen = PyDict_New();
    p->cur_suite = &p->root_suite;
    if (!p->out || !p->declared || !p->id_prefix || !p->pytest_prefix || !p->root_suite.seen) {
        Py_DECREF(p);
        return NULL;
    }
    p->xp = expat->ParserCreate_MM(NULL, NULL, NULL);
    if (p->xp == NULL) {
        Py_DECREF(p);
        return PyErr_NoMemory();
    }
    expat->SetUserData(p->xp, p);
    expat->SetElementHandler(p->xp, on_start, on_end);
    expat->SetCharacterDataHandler(p->xp, on_text);
    expat->SetCommentHandler(p->xp, on_comment);
    expat->SetProcessingInstructionHandler(p->xp, on_pi);
    expat->SetStartDoctypeDeclHandler(p->xp, on_doctype);
    return (PyObject *)p;
}

static PyObject *
parser_feed(JUnitParser *p, PyObject *args)
{
    Py_buffer data;
    int final = 0;
    if (!PyArg_ParseTuple(args, "y*|p:feed", &data, &final))
        return NULL;
    if (p->finished || p->xp == NULL) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "parser already finished");
        return NULL;
    }
    if (data.len > INT_MAX) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "feed at most 2 GiB at a time");
        return NULL;
    }
    int ok = expat->Parse(p->xp, data.buf, (int)data.len, final);
    PyBuffer_Release(&data);
    if (p->failed) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "JUnitParser failed");
        parser_release(p);
        p->finished = 1;
        return NULL;
    }
    if (p->bail != NULL || ok == 0) {
        if (p->bail != NULL)
            PyErr_SetString(FallbackError, p->bail);
        else
            PyErr_Format(FallbackError, "XML error at line %lu: %s",
                         expat->GetErrorLineNumber(p->xp),
                         expat->ErrorString(expat->GetErrorCode(p->xp)));
        parser_release(p);
        p->finished = 1;
        return NULL;
    }
    if (final) {
        if (p->pending != NULL) {
            int rc = PyList_Append(p->out, p->pending);
            Py_CLEAR(p->pending);
            if (rc < 0)
                return NULL;
        }
        parser_release(p);
        p->finished = 1;
    }
    PyObject *batch = p->out;
    p->out = PyList_New(0);
    if (p->out == NULL) {
        p->out = batch;
        return NULL;
    }
    return batch;
}

static PyObject *
parser_get_declared(JUnitParser *p, void *closure)
{
    Py_INCREF(p->declared);
    return p->declared;
}

static PyMethodDef parser_methods[] = {
    {"feed", (PyCFunction)parser_feed, METH_VARARGS,
     "feed(data, final=False) -> list of finished TestCase objects"},
    {NULL}};

static PyGetSetDef parser_getset[] = {
    {"declared", (getter)parser_get_declared, NULL,
     "(tests, failures, errors, skipped, disabled, time) of each counted testsuite", NULL},
    {NULL}};

static PyTypeObject JUnitParserType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ci_app.artifacts._speedups.JUnitParser",
    .tp_basicsize = sizeof(JUnitParser),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = parser_new,
    .tp_dealloc = (destructor)parser_dealloc,
    .tp_traverse = (traverseproc)parser_traverse,
    .tp_clear = (inquiry)parser_clear,
    .tp_methods = parser_methods,
    .tp_getset = parser_getset,
    .tp_doc = "Streaming JUnit parser (expat); see junit.py for the rules it mirrors.",
};

/* ---- encode_cases ---- */

static const char hexdigits[] = "0123456789abcdef";

/* The escape of an ASCII character json must escape: '"', '\\' or a control character. */
static inline char *
put_escape(char *o, unsigned int ch)
{
    *o++ = '\\';
    switch (ch) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    default:
        *o++ = 'u'; *o++ = '0'; *o++ = '0';
        *o++ = hexdigits[ch >> 4]; *o++ = hexdigits[ch & 15];
    }
    return o;
}

/* JSON string, as json's c_encode_basestring (ensure_ascii=False) writes it;
 * a lone surrogate (which UTF-8 cannot carry) is written as a \\u escape. */
static int
put_json_str(Buf *b, PyObject *s)
{
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "str expected");
        return -1;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    if (buf_grow(b, n * 4 + 2) < 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    if (kind == PyUnicode_1BYTE_KIND && PyUnicode_IS_ASCII(s)) {
        const unsigned char *c = data;
        Py_ssize_t i = 0;
        while (i < n) {
            Py_ssize_t start = i;
            while (i < n && c[i] >= 0x20 && c[i] != '"' && c[i] != '\\')
                i++;
            memcpy(o, c + start, i - start);
            o += i - start;
            if (i == n)
                break;
            b->len = o - b->data;
            if (buf_grow(b, 6 + (n - i) * 4 + 1) < 0)
                return -1;
            o = b->data + b->len;
            o = put_escape(o, c[i++]);
        }
    }
    else {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 ch = PyUnicode_READ(kind, data, i);
            b->len = o - b->data;
            if (b->len + 8 + (n - i) * 4 > b->cap) {
                if (buf_grow(b, 8 + (n - i) * 4) < 0)
                    return -1;
                o = b->data + b->len;
            }
            if (ch < 0x80) {
                if (ch >= 0x20 && ch != '"' && ch != '\\') {
                    *o++ = (char)ch;
                    continue;
                }
                o = put_escape(o, ch);
            }
            else if (ch < 0x800) {
                *o++ = (char)(0xc0 | (ch >> 6));
                *o++ = (char)(0x80 | (ch & 0x3f));
            }
            else if (ch >= 0xd800 && ch <= 0xdfff) {
                *o++ = '\\'; *o++ = 'u';
                *o++ = hexdigits[(ch >> 12) & 15]; *o++ = hexdigits[(ch >> 8) & 15];
                *o++ = hexdigits[(ch >> 4) & 15]; *o++ = hexdigits[ch & 15];
            }
            else if (ch < 0x10000) {
                *o++ = (char)(0xe0 | (ch >> 12));
                *o++ = (char)(0x80 | ((ch >> 6) & 0x3f));
                *o++ = (char)(0x80 | (ch & 0x3f));
            }
            else {
                *o++ = (char)(0xf0 | (ch >> 18));
                *o++ = (char)(0x80 | ((ch >> 12) & 0x3f));
                *o++ = (char)(0x80 | ((ch >> 6) & 0x3f));
                *o++ = (char)(0x80 | (ch & 0x3f));
            }
        }
    }
    *o++ = '"';
    b->len = o - b->data;
    return 0;
}

static int
put_opt_str(Buf *b, PyObject *s)
{
    return s == Py_None ? buf_put(b, "null", 4) : put_json_str(b, s);
}

static int
put_int(Buf *b, PyObject *v)
{
    if (v == Py_None)
        return buf_put(b, "null", 4);
    if (v == Py_True || v == Py_False || !PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "int expected");
        return -1;
    }
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (!overflow) {
        char tmp[32];
        int len = snprintf(tmp, sizeof tmp, "%lld", n);
        return buf_put(b, tmp, len);
    }
    PyObject *s = PyObject_Str(v);
    if (s == NULL)
        return -1;
    Py_ssize_t len;
    const char *u = PyUnicode_AsUTF8AndSize(s, &len);
    int rc = u == NULL ? -1 : buf_put(b, u, len);
    Py_DECREF(s);
    return rc;
}

static int
put_float(Buf *b, double d)
{
    if (!isfinite(d))
        return buf_put(b, "0.0", 3);
    char *r = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (r == NULL)
        return -1;
    int rc = buf_puts(b, r);
    PyMem_Free(r);
    return rc;
}

static int
put_case(Buf *b, PyObject *c, int outcome)
{
#define KEY(k) if (buf_put(b, k, sizeof(k) - 1) < 0) return -1
    KEY("{\"id\":");
    if (put_json_str(b, SLOT(c, F_ID)) < 0) return -1;
    KEY(",\"suite\":");
    if (put_opt_str(b, SLOT(c, F_SUITE)) < 0) return -1;
    KEY(",\"classname\":");
    if (put_opt_str(b, SLOT(c, F_CLASSNAME)) < 0) return -1;
    KEY(",\"name\":");
    if (put_json_str(b, SLOT(c, F_NAME)) < 0) return -1;
    KEY(",\"file\":");
    if (put_opt_str(b, SLOT(c, F_FILE)) < 0) return -1;
    KEY(",\"line\":");
    if (put_int(b, SLOT(c, F_LINE)) < 0) return -1;
    KEY(",\"outcome\":");
    if (buf_puts(b, outcome_json[outcome]) < 0) return -1;
    KEY(",\"duration_s\":");
    if (put_float(b, PyFloat_AsDouble(SLOT(c, F_DURATION))) < 0) return -1;
    KEY(",\"message\":");
    if (put_opt_str(b, SLOT(c, F_MESSAGE)) < 0) return -1;
    KEY(",\"details\":");
    if (put_opt_str(b, SLOT(c, F_DETAILS)) < 0) return -1;
    KEY(",\"stdout\":");
    if (put_opt_str(b, SLOT(c, F_STDOUT)) < 0) return -1;
    KEY(",\"stderr\":");
    if (put_opt_str(b, SLOT(c, F_STDERR)) < 0) return -1;
    KEY(",\"retries\":");
    if (put_int(b, SLOT(c, F_RETRIES)) < 0) return -1;
    if (SLOT(c, F_FLAKY) == Py_True) {
        KEY(",\"flaky\":true}");
    }
    else {
        KEY(",\"flaky\":false}");
    }
    return 0;
#undef KEY
}

static int
outcome_index(PyObject *o)
{
    for (int i = 0; i < N_OUTCOMES; i++) {
        if (o == outcomes[i])
            return i;
    }
    for (int i = 0; i < N_OUTCOMES; i++) {
        int eq = PyObject_RichCompareBool(o, outcomes[i], Py_EQ);
        if (eq < 0)
            return -1;
        if (eq)
            return i;
    }
    PyErr_SetString(PyExc_ValueError, "unknown outcome");
    return -1;
}

/* A TestCase whose fields have exactly the types the fast encoder writes. */
static int
plain_case(PyObject *c)
{
    if (Py_TYPE(c) != case_type)
        return 0;
    for (int f = 0; f < N_FIELDS; f++) {
        if (SLOT(c, f) == NULL)
            return 0;
    }
    static const int strs[] = {F_ID, F_NAME};
    static const int opt_strs[] = {F_SUITE, F_CLASSNAME, F_FILE, F_MESSAGE, F_DETAILS,
                                   F_STDOUT, F_STDERR};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        if (!PyUnicode_CheckExact(SLOT(c, strs[i])))
            return 0;
    }
    for (size_t i = 0; i < sizeof opt_strs / sizeof *opt_strs; i++) {
        PyObject *v = SLOT(c, opt_strs[i]);
        if (v != Py_None && !PyUnicode_CheckExact(v))
            return 0;
    }
    PyObject *line = SLOT(c, F_LINE), *flaky = SLOT(c, F_FLAKY), *o = SLOT(c, F_OUTCOME);
    return (line == Py_None || PyLong_CheckExact(line)) && PyLong_CheckExact(SLOT(c, F_RETRIES)) &&
           PyFloat_CheckExact(SLOT(c, F_DURATION)) && (flaky == Py_True || flaky == Py_False) &&
           (o == outcomes[0] || o == outcomes[1] || o == outcomes[2] || o == outcomes[3]);
}

static void
encode_done(Buf *bp, Buf *kept, int *kept_busy)
{
    if (bp != kept || bp->cap > (1 << 24)) { /* its own, or outsized: give it back */
        PyMem_Free(bp->data);
        *bp = (Buf){0};
    }
    if (bp == kept)
        *kept_busy = 0;
}

static PyObject *
encode_cases(PyObject *self, PyObject *args)
{
    PyObject *cases;
    double duration;
    if (!PyArg_ParseTuple(args, "O!d:encode_cases", &PyList_Type, &cases, &duration))
        return NULL;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure() was not called");
        return NULL;
    }
    /* One buffer kept between calls (no fresh pages for every batch); a nested or
     * concurrent call (another thread while case_to_json runs) gets its own. */
    static Buf kept = {0};
    static int kept_busy = 0;
    Buf own = {0};
    Buf *bp = kept_busy ? &own : &kept;
    if (bp == &kept)
        kept_busy = 1;
    bp->len = 0;
    long counts[N_OUTCOMES] = {0};
    long flaky = 0;
    Py_ssize_t n = PyList_GET_SIZE(cases);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = PyList_GET_ITEM(cases, i);
        if (i > 0 && buf_put(bp, ",\n", 2) < 0)
            goto fail;
        if (!plain_case(c)) {
            /* not a plain TestCase: the reference encoder and counter rules */
            PyObject *js = PyObject_CallOneArg(case_json_fn, c);
            if (js == NULL)
                goto fail;
            Py_ssize_t len;
            const char *u = PyUnicode_AsUTF8AndSize(js, &len);
            int rc = u == NULL ? -1 : buf_put(bp, u, len);
            Py_DECREF(js);
            if (rc < 0)
                goto fail;
            PyObject *o = PyObject_GetAttrString(c, "outcome");
            PyObject *fl = o ? PyObject_GetAttrString(c, "flaky") : NULL;
            PyObject *du = fl ? PyObject_GetAttrString(c, "duration_s") : NULL;
            int oi = du ? outcome_index(o) : -1;
            double d = oi >= 0 ? PyFloat_AsDouble(du) : -1.0;
            int t = (oi >= 0 && !(d == -1.0 && PyErr_Occurred())) ? PyObject_IsTrue(fl) : -1;
            Py_XDECREF(o);
            Py_XDECREF(fl);
            Py_XDECREF(du);
            if (t < 0)
                goto fail;
            counts[oi]++;
            flaky += t;
            duration += d;
            continue;
        }
        int oi = outcome_index(SLOT(c, F_OUTCOME));
        if (oi < 0 || put_case(bp, c, oi) < 0)
            goto fail;
        counts[oi]++;
        flaky += SLOT(c, F_FLAKY) == Py_True;
        duration += PyFloat_AS_DOUBLE(SLOT(c, F_DURATION));
    }
    PyObject *text = PyBytes_FromStringAndSize(bp->data ? bp->data : "", bp->len);
    encode_done(bp, &kept, &kept_busy);
    if (text == NULL)
        return NULL;
    return Py_BuildValue("(Nllllld)", text, counts[O_SKIPPED], counts[O_PASSED],
                         counts[O_FAILED], counts[O_ERROR], flaky, duration);
fail:
    encode_done(bp, &kept, &kept_busy);
    return NULL;
}

/* ---- module ---- */

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(TestCase, outcomes, skip_statuses, line_fn, duration_fn, pytest_prefix_fn, "
     "merge_fn, case_to_json)"},
    {"encode_cases", encode_cases, METH_VARARGS,
     "encode_cases(cases, duration) -> (utf8_json_lines, skipped, passed, failed, errors, "
     "flaky, duration)"},
    {NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "Native fast paths for JUnit parsing and results.json encoding.", -1, module_methods};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    expat = PyCapsule_Import("pyexpat.expat_CAPI", 0);
    if (expat == NULL)
        return NULL;
    if (strncmp(expat->magic, "pyexpat.expat_CAPI 1.", 21) != 0 ||
        (size_t)expat->size < offsetof(struct ExpatCAPI, SetStartDoctypeDeclHandler) +
                                  sizeof(expat->SetStartDoctypeDeclHandler)) {
        PyErr_SetString(PyExc_ImportError, "pyexpat C API has an unexpected layout");
        return NULL;
    }
    if (PyType_Ready(&JUnitParserType) < 0)
        return NULL;
    s_nl = PyUnicode_InternFromString("\n");
    s_nlnl = PyUnicode_InternFromString("\n\n");
    s_colons = PyUnicode_InternFromString("::");
    s_unnamed = PyUnicode_InternFromString("(unnamed)");
    s_lower = PyUnicode_InternFromString("lower");
    if (!s_nl || !s_nlnl || !s_colons || !s_unnamed || !s_lower)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    FallbackError = PyErr_NewExceptionWithDoc(
        "ci_app.artifacts._speedups.FallbackError",
        "The native parser met something only the reference parser handles exactly.",
        PyExc_Exception, NULL);
    if (FallbackError == NULL || PyModule_AddObjectRef(m, "FallbackError", FallbackError) < 0 ||
        PyModule_AddObjectRef(m, "JUnitParser", (PyObject *)&JUnitParserType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
