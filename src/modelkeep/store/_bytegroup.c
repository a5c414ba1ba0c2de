/* Byte grouping for the store's codec (codec.py): the bytes of an object taken apart by
 * their position within a value, and put back together.
 *
 * Group k of an n-byte object grouped by width w holds bytes k, k+w, k+2w, ... in order,
 * and the groups lie one after the other; group k is (n - k + w - 1) / w bytes long.
 * CPython's extended slicing does the same a byte at a time with the GIL held; these loops
 * are written so that the compiler vectorises them, and they release the GIL, so the
 * threads of an add or a restore regroup on both cores at once.
 *
 * Every length is checked here, against the buffers themselves, before any byte moves,
 * and an output that overlaps a group is refused: what a caller passes cannot make these
 * functions read or write outside a buffer, or give back wrong bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_WIDTH 8

static void split(const unsigned char *src, Py_ssize_t n, int w, unsigned char *dst) {
    Py_ssize_t q = n / w, r = n % w, at = 0;
    unsigned char *g[MAX_WIDTH];
    for (int k = 0; k < w; k++) {
        g[k] = dst + at;
        at += q + (k < r);
    }
    if (w == 4) {
        unsigned char *restrict a = g[0], *restrict b = g[1], *restrict c = g[2],
                                *restrict d = g[3];
        for (Py_ssize_t i = 0; i < q; i++) {
            a[i] = src[4 * i];
            b[i] = src[4 * i + 1];
            c[i] = src[4 * i + 2];
            d[i] = src[4 * i + 3];
        }
    } else if (w == 2) {
        unsigned char *restrict a = g[0], *restrict b = g[1];
        for (Py_ssize_t i = 0; i < q; i++) {
            a[i] = src[2 * i];
            b[i] = src[2 * i + 1];
        }
    } else {
        for (Py_ssize_t i = 0; i < q; i++)
            for (int k = 0; k < w; k++) g[k][i] = src[w * i + k];
    }
    for (int k = 0; k < r; k++) g[k][q] = src[q * w + k];
}

static void join(unsigned char *const *g, Py_ssize_t n, int w, unsigned char *dst) {
    Py_ssize_t q = n / w, r = n % w;
    if (w == 4) {
        const unsigned char *restrict a = g[0], *restrict b = g[1], *restrict c = g[2],
                                      *restrict d = g[3];
        for (Py_ssize_t i = 0; i < q; i++) {
            dst[4 * i] = a[i];
            dst[4 * i + 1] = b[i];
            dst[4 * i + 2] = c[i];
            dst[4 * i + 3] = d[i];
        }
    } else if (w == 2) {
        const unsigned char *restrict a = g[0], *restrict b = g[1];
        for (Py_ssize_t i = 0; i < q; i++) {
            dst[2 * i] = a[i];
            dst[2 * i + 1] = b[i];
        }
    } else {
        for (Py_ssize_t i = 0; i < q; i++)
            for (int k = 0; k < w; k++) dst[w * i + k] = g[k][i];
    }
    for (int k = 0; k < r; k++) dst[q * w + k] = g[k][q];
}

static int check_width(int w) {
    if (w < 1 || w > MAX_WIDTH) {
        PyErr_Format(PyExc_ValueError, "width %d is not in 1..%d", w, MAX_WIDTH);
        return 0;
    }
    return 1;
}

static int check_room(Py_ssize_t at, Py_ssize_t n, Py_ssize_t room) {
    if (at < 0 || n > room || at > room - n) {
        PyErr_Format(PyExc_ValueError, "%zd bytes do not fit at %zd of %zd", n, at, room);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(group_doc,
             "group(data, width, head) -> bytearray\n\n"
             "data's bytes grouped by width, after head bytes left for the caller to fill.");

static PyObject *py_group(PyObject *self, PyObject *args) {
    Py_buffer src;
    int w;
    Py_ssize_t head;
    PyObject *out = NULL;
    if (!PyArg_ParseTuple(args, "y*in", &src, &w, &head)) return NULL;
    if (check_width(w) && check_room(head, 0, PY_SSIZE_T_MAX - src.len)) {
        /* not zero-filled: every byte past head is written below */
        out = PyByteArray_FromStringAndSize(NULL, head + src.len);
        if (out != NULL) {
            unsigned char *dst = (unsigned char *)PyByteArray_AS_STRING(out) + head;
            Py_BEGIN_ALLOW_THREADS;
            split(src.buf, src.len, w, dst);
            Py_END_ALLOW_THREADS;
        }
    }
    PyBuffer_Release(&src);
    return out;
}

PyDoc_STRVAR(ungroup_doc,
             "ungroup(groups, out, at) -> None\n\n"
             "Interleave groups (one buffer per position within a value, each of the length\n"
             "grouping gives it) into out[at : at + their total length].");

static PyObject *py_ungroup(PyObject *self, PyObject *args) {
    PyObject *seq, *fast;
    Py_buffer dst, parts[MAX_WIDTH];
    Py_ssize_t at, n = 0;
    int w = 0, ok = 0;
    if (!PyArg_ParseTuple(args, "Ow*n", &seq, &dst, &at)) return NULL;
    /* a tuple of its own: a buffer export cannot change the sequence under us */
    fast = PySequence_Tuple(seq);
    if (fast == NULL) goto done;
    Py_ssize_t count = PyTuple_GET_SIZE(fast);
    if (!check_width((int)(count > MAX_WIDTH ? MAX_WIDTH + 1 : count))) goto done;
    for (; w < count; w++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(fast, w), &parts[w], PyBUF_SIMPLE) < 0) goto done;
        n += parts[w].len;
    }
    for (int k = 0; k < w; k++) {
        if (parts[k].len != (n - k + w - 1) / w) {
            PyErr_Format(PyExc_ValueError, "group %d is %zd bytes, not %zd", k, parts[k].len,
                         (n - k + w - 1) / w);
            goto done;
        }
    }
    if (!check_room(at, n, dst.len)) goto done;
    const char *lo = (const char *)dst.buf + at, *hi = lo + n;
    for (int k = 0; k < w; k++) {
        const char *p = parts[k].buf;
        if (parts[k].len > 0 && n > 0 && p < hi && lo < p + parts[k].len) {
            PyErr_Format(PyExc_ValueError, "group %d overlaps the output", k);
            goto done;
        }
    }
    unsigned char *g[MAX_WIDTH];
    for (int k = 0; k < w; k++) g[k] = parts[k].buf;
    Py_BEGIN_ALLOW_THREADS;
    join(g, n, w, (unsigned char *)dst.buf + at);
    Py_END_ALLOW_THREADS;
    ok = 1;
done:
    for (int k = 0; k < w; k++) PyBuffer_Release(&parts[k]);
    Py_XDECREF(fast);
    PyBuffer_Release(&dst);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"group", py_group, METH_VARARGS, group_doc},
    {"ungroup", py_ungroup, METH_VARARGS, ungroup_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "modelkeep.store._bytegroup",
    "Byte grouping of the store's codec, in native code.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__bytegroup(void) { return PyModule_Create(&module); }
