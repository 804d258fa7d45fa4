/* dy/dt = A y + c for deSolve's compiled-code interface (R package deSolve, "compiledCode"
 * vignette): the peer of cellpkpd's exact path in benchmarks/bench_library.py.
 *
 * parms (set from R by initmod): A row-major in the first n*n entries, c in the MAXN
 * entries from MAXN*MAXN on, n last; the vector is padded to a fixed length so one compiled
 * library serves every linear model of up to MAXN states. jac gives lsoda the exact
 * Jacobian A (jactype "fullusr"), as a user of compiled deSolve would for a stiff model.
 *
 * Built by `R CMD SHLIB linear.c` (bench_library.py does it in a temporary folder).
 */
#include <R.h>

#define MAXN 128
#define NPARMS (MAXN * MAXN + MAXN + 1)

static double parms[NPARMS];

void initmod(void (*odeparms)(int *, double *))
{
    int N = NPARMS;
    odeparms(&N, parms);
}

void derivs(int *neq, double *t, double *y, double *ydot, double *yout, int *ip)
{
    int n = *neq;
    const double *c = parms + MAXN * MAXN;
    for (int i = 0; i < n; i++) {
        const double *row = parms + (size_t) i * n;
        double s = c[i];
        for (int j = 0; j < n; j++)
            s += row[j] * y[j];
        ydot[i] = s;
    }
}

void jac(int *neq, double *t, double *y, int *ml, int *mu, double *pd, int *nrowpd,
         double *yout, int *ip)
{
    int n = *neq, ld = *nrowpd;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            pd[i + (size_t) j * ld] = parms[(size_t) i * n + j];
}
