/* The number loops of the REST JSON in C: writing float32 answers (`rows_text`) and reading
   the numbers of large request arrays (`read_numbers`). A batch of 64 MNIST images is 50,176
   numbers each way. Where this module is not built, json_numbers.py and json_fast.py do the
   same work with numpy and orjson, and the tests hold both to the same results.

   Writing (`rows_text`): the same text as json_numbers.py's numpy code.

   A number is written as `format_float` writes it: "%g" (six significant digits) when that
   reads back as the same float32, else "%.9g"; ".0" appended to whole numbers; NaN,
   Infinity, -Infinity. The nine digits come from the value scaled by a power of ten in
   double precision, which is exact to a few units in the last place; wherever that cannot
   settle the digits for certain (within a hair of a rounding tie, a power of ten beyond
   1e22) the value is written by Python's own float formatting and parsing, as the
   reference does. tests/test_serving_json.py compares the two on random bit patterns. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define MAX_DEPTH 32
/* The longest number: "-1.23456789e-05", "-0.000123456789" (15), "-Infinity" (9). */
#define MAX_NUMBER 24

static double POWERS[64]; /* 10**k correctly rounded */

/* The reference path: Python's "%g", read back as a double then a float32, else "%.9g". */
static int reference(float value, char *out) {
    char *text = PyOS_double_to_string((double)value, 'g', 6, 0, NULL);
    if (text == NULL) return -1;
    double back = PyOS_string_to_double(text, NULL, NULL);
    if (back == -1.0 && PyErr_Occurred()) { PyMem_Free(text); return -1; }
    if ((float)back != value) {
        PyMem_Free(text);
        text = PyOS_double_to_string((double)value, 'g', 9, 0, NULL);
        if (text == NULL) return -1;
    }
    int length = (int)strlen(text);
    if (length > MAX_NUMBER - 2) { PyMem_Free(text); PyErr_SetString(PyExc_SystemError, "long number"); return -1; }
    memcpy(out, text, length);
    PyMem_Free(text);
    if (!memchr(out, '.', length) && !memchr(out, 'e', length)) {
        out[length++] = '.';
        out[length++] = '0';
    }
    return length;
}

/* Writes one number at `out`; returns its length, or -1 with a Python error set. */
static int write_number(float value, char *out) {
    if (isnan(value)) { memcpy(out, "NaN", 3); return 3; }
    if (isinf(value)) {
        if (value < 0) { memcpy(out, "-Infinity", 9); return 9; }
        memcpy(out, "Infinity", 8);
        return 8;
    }
    char *p = out;
    if (signbit(value)) *p++ = '-';
    if (value == 0) { memcpy(p, "0.0", 3); return (int)(p - out) + 3; }

    /* m9: the value rounded to nine significant digits, m9 * 10**(x - 8). */
    double a = fabs((double)value);
    int binary;
    frexp(a, &binary);
    int x = (int)floor((binary - 1) * 0.30102999566398120); /* one too small at most */
    double scaled = 0, m = 0;
    for (int i = 0; i < 3; i++) {
        int e = 8 - x;
        scaled = e >= 0 ? a * POWERS[e] : a / POWERS[-e];
        m = (double)(long long)(scaled + 0.5); /* ties are left to the reference below */
        if (m >= 1e9) x += 1;
        else if (m < 1e8) x -= 1;
        else break;
    }
    double fraction = scaled - (double)(long long)scaled;
    if (!(m >= 1e8 && m < 1e9) || !(fabs(fraction - 0.5) > scaled * 1e-13))
        return reference(value, out);

    /* m6 from m9: the same rounding as the value's unless m9 ends in exactly 500. */
    long m9 = (long)m;
    long dropped = m9 % 1000;
    if (dropped == 500) return reference(value, out);
    long m6 = m9 / 1000 + (dropped > 500);
    int x6 = x;
    if (m6 == 1000000) { m6 = 100000; x6 += 1; }
    int k = x6 - 5;
    if (k > 22 || k < -22) return reference(value, out); /* m6 * 10**k not one rounding */
    double six = k >= 0 ? (double)m6 * POWERS[k] : (double)m6 / POWERS[-k];

    long significand; int precision, exponent;
    if ((float)six == fabsf(value)) { significand = m6; precision = 6; exponent = x6; }
    else { significand = m9; precision = 9; exponent = x; }
    char digits[9];
    for (int j = precision - 1; j >= 0; j--) {
        digits[j] = (char)('0' + significand % 10);
        significand /= 10;
    }
    int shown = precision; /* up to the last nonzero digit */
    while (shown > 1 && digits[shown - 1] == '0') shown--;

    if (exponent < -4 || exponent >= precision) { /* 1.5e-05, 1e+06 */
        *p++ = digits[0];
        if (shown > 1) { *p++ = '.'; memcpy(p, digits + 1, shown - 1); p += shown - 1; }
        int magnitude = exponent < 0 ? -exponent : exponent;
        *p++ = 'e';
        *p++ = exponent < 0 ? '-' : '+';
        *p++ = (char)('0' + magnitude / 10);
        *p++ = (char)('0' + magnitude % 10);
    } else if (exponent >= 0) { /* 12.5, 100.0 */
        memcpy(p, digits, exponent + 1);
        p += exponent + 1;
        *p++ = '.';
        if (shown > exponent + 1) {
            memcpy(p, digits + exponent + 1, shown - exponent - 1);
            p += shown - exponent - 1;
        } else {
            *p++ = '0';
        }
    } else { /* 0.00125 */
        *p++ = '0';
        *p++ = '.';
        for (int z = 0; z < -exponent - 1; z++) *p++ = '0';
        memcpy(p, digits, shown);
        p += shown;
    }
    return (int)(p - out);
}

PyDoc_STRVAR(rows_text_doc,
"rows_text(values, row_shape, row_end) -> str\n\n"
"The JSON text of each row of a float32 array, every row followed by `row_end`.\n\n"
"Args:\n"
"    values: a C-contiguous float32 buffer holding whole rows.\n"
"    row_shape: the shape of one row (a tuple of positive ints; () for numbers).\n"
"    row_end: one ASCII character written after each row.");

static PyObject *rows_text(PyObject *self, PyObject *args) {
    PyObject *values, *row_shape;
    int row_end;
    if (!PyArg_ParseTuple(args, "OO!C", &values, &PyTuple_Type, &row_shape, &row_end)) return NULL;
    if (row_end < 1 || row_end > 127) {
        PyErr_SetString(PyExc_ValueError, "row_end must be one ASCII character");
        return NULL;
    }
    Py_ssize_t depth = PyTuple_GET_SIZE(row_shape);
    if (depth > MAX_DEPTH) {
        PyErr_SetString(PyExc_ValueError, "row_shape has more than 32 dimensions");
        return NULL;
    }
    Py_ssize_t sizes[MAX_DEPTH], per_row = 1; /* sizes[0]: the innermost dimension */
    for (Py_ssize_t i = 0; i < depth; i++) {
        Py_ssize_t size = PyLong_AsSsize_t(PyTuple_GET_ITEM(row_shape, depth - 1 - i));
        if (size == -1 && PyErr_Occurred()) return NULL;
        if (size < 1 || per_row > PY_SSIZE_T_MAX / size) {
            PyErr_SetString(PyExc_ValueError, "row_shape needs positive sizes");
            return NULL;
        }
        sizes[i] = size;
        per_row *= size;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(values, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (view.itemsize != 4 || view.format == NULL || strcmp(view.format, "f") != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "values must be a float32 buffer");
        return NULL;
    }
    Py_ssize_t n = view.len / 4;
    Py_ssize_t per_value = MAX_NUMBER + 3 * depth + 1;
    if (n % per_row != 0 || n > (PY_SSIZE_T_MAX - 16) / per_value) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "values must hold whole rows");
        return NULL;
    }
    char *out = PyMem_Malloc(n * per_value + 16);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    const float *data = view.buf;
    Py_ssize_t counts[MAX_DEPTH] = {0}; /* position in each dimension */
    Py_ssize_t position = 0;            /* in the row */
    char *p = out;
    for (Py_ssize_t i = 0; i < n; i++, position++) {
        if (position == per_row) position = 0;
        if (position == 0) for (Py_ssize_t j = 0; j < depth; j++) *p++ = '[';
        int length = write_number(data[i], p);
        if (length < 0) {
            PyMem_Free(out);
            PyBuffer_Release(&view);
            return NULL;
        }
        p += length;
        int closing = 0; /* lists that end after this value */
        while (closing < depth && ++counts[closing] == sizes[closing]) counts[closing++] = 0;
        for (int j = 0; j < closing; j++) *p++ = ']';
        if (position == per_row - 1) {
            *p++ = (char)row_end;
        } else {
            *p++ = ',';
            for (int j = 0; j < closing; j++) *p++ = '[';
        }
    }
    PyBuffer_Release(&view);
    PyObject *text = PyUnicode_DecodeASCII(out, p - out, NULL);
    PyMem_Free(out);
    return text;
}

/* Reading (`read_numbers`). One number of JSON's grammar at `p` (before `end`) as a double,
   when it is exact with one rounding: at most 19 significant digits forming an integer w
   up to 2**53, and a power of ten within 1e22 (w * 10**e or w / 10**-e, both correctly
   rounded). Returns the position after the number, or NULL where the number is not JSON or
   needs the slow path (more digits, a larger power, "-0", which numpy and json read apart). */
static const char *read_number(const char *p, const char *end, double *out) {
    int negative = 0;
    if (p < end && *p == '-') { negative = 1; p++; }
    if (p >= end || *p < '0' || *p > '9') return NULL;
    unsigned long long w = 0;
    int digits = 0, scale = 0, fraction = 0, exponent_part = 0;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) { w = w * 10 + (unsigned)(*p - '0'); if (w) digits++; }
            else scale++;
            p++;
        }
    }
    if (p < end && *p == '.') {
        p++;
        fraction = 1;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) { w = w * 10 + (unsigned)(*p - '0'); if (w) digits++; scale--; }
            else if (*p != '0') return NULL; /* a 20th significant digit: slow path */
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        exponent_part = 1;
        int sign = 1, e = 0;
        if (p < end && (*p == '+' || *p == '-')) { if (*p == '-') sign = -1; p++; }
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') {
            if (e < 100000) e = e * 10 + (*p - '0');
            p++;
        }
        scale += sign * e;
    }
    if (negative && w == 0 && !fraction && !exponent_part) return NULL; /* "-0" */
    if (scale > 0 && digits + scale > 19 && w != 0) return NULL;
    if (w > (1ULL << 53) || scale > 22 || scale < -22) {
        if (w != 0) return NULL;
        scale = 0; /* zero with any exponent */
    }
    double value = (double)w;
    value = scale >= 0 ? value * POWERS[scale] : value / POWERS[-scale];
    *out = negative ? -value : value;
    return p;
}

static int blank(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '[' || c == ']';
}

PyDoc_STRVAR(read_numbers_doc,
"read_numbers(text) -> bytearray | None\n\n"
"The numbers of a JSON array of numbers (nested lists; brackets are not checked here), in\n"
"order, as float64 bytes (a bytearray); None where some number is not JSON or needs more than one\n"
"rounding (the caller reads the text another way then).");

static PyObject *read_numbers(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    const char *p = view.buf, *end = p + view.len;
    Py_ssize_t most = 1; /* numbers: one more than the commas at most */
    for (const char *q = p; (q = memchr(q, ',', end - q)) != NULL; q++) most++;
    double *values = PyMem_Malloc(sizeof(double) * (size_t)most);
    if (values == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_ssize_t count = 0;
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    while (1) {
        if (count == most) { ok = 0; break; }
        while (p < end && blank(*p)) p++;
        if (p >= end) { ok = count > 0; break; }
        p = read_number(p, end, values + count);
        if (p == NULL) { ok = 0; break; }
        count++;
        while (p < end && blank(*p)) p++;
        if (p >= end) break;
        if (*p != ',') { ok = 0; break; }
        p++;
        while (p < end && blank(*p)) p++;
        if (p >= end) { ok = 0; break; } /* a trailing comma */
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *result = ok ? PyByteArray_FromStringAndSize((const char *)values, count * 8)
                          : Py_NewRef(Py_None);
    PyMem_Free(values);
    return result;
}

PyDoc_STRVAR(scan_array_doc,
"scan_array(body, start, stop, piece) -> (end, cuts, structure) | None\n\n"
"Where the array opening at `body[start]` closes: the index after its closing bracket,\n"
"the first comma of its top level in each `piece` bytes from `start`, and its brackets\n"
"and commas in order; None when it does not close before `stop`.");

static PyObject *scan_array(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, stop, piece;
    if (!PyArg_ParseTuple(args, "y*nnn", &view, &start, &stop, &piece)) return NULL;
    if (start < 0 || stop > view.len || start > stop || piece < 1) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "start, stop or piece out of range");
        return NULL;
    }
    const char *body = view.buf;
    char *structure = PyMem_RawMalloc((size_t)(stop - start) + 1);
    Py_ssize_t *cuts = PyMem_RawMalloc(sizeof(Py_ssize_t) * (size_t)((stop - start) / piece + 2));
    if (structure == NULL || cuts == NULL) {
        PyMem_RawFree(structure);
        PyMem_RawFree(cuts);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_ssize_t size = 0, ncuts = 0, next_group = 0, end = -1;
    long long level = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = start; i < stop; i++) {
        char c = body[i];
        if (c == '[') level++;
        else if (c == ']') level--;
        else if (c != ',') continue;
        structure[size++] = c;
        if (c == ',' && level == 1 && (i - start) / piece >= next_group) {
            cuts[ncuts++] = i;
            next_group = (i - start) / piece + 1;
        }
        if (level <= 0) { end = i + 1; break; }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *result = NULL;
    if (end < 0) {
        result = Py_NewRef(Py_None);
    } else {
        PyObject *list = PyList_New(ncuts);
        PyObject *text = PyBytes_FromStringAndSize(structure, size);
        for (Py_ssize_t j = 0; list != NULL && j < ncuts; j++) {
            PyObject *cut = PyLong_FromSsize_t(cuts[j]);
            if (cut == NULL) { Py_CLEAR(list); break; }
            PyList_SET_ITEM(list, j, cut);
        }
        if (list != NULL && text != NULL) result = Py_BuildValue("(nOO)", end, list, text);
        Py_XDECREF(list);
        Py_XDECREF(text);
    }
    PyMem_RawFree(structure);
    PyMem_RawFree(cuts);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_array", scan_array, METH_VARARGS, scan_array_doc},
    {"rows_text", rows_text, METH_VARARGS, rows_text_doc},
    {"read_numbers", read_numbers, METH_VARARGS, read_numbers_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_json_numbers",
    "The REST JSON's number loops (see json_numbers.py and json_fast.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__json_numbers(void) {
    for (int k = 0; k < 64; k++) {
        char text[8];
        PyOS_snprintf(text, sizeof text, "1e%d", k);
        POWERS[k] = PyOS_string_to_double(text, NULL, NULL);
    }
    return PyModule_Create(&module);
}
