# deSolve's lsoda on compiled C code (linear.c) for the subjects bench_library.py writes:
# the compiled-deSolve peer of cellpkpd's exact path. Not run by the tests.
#
#   Rscript run_lsoda.R <folder> <linear.so> <rtol> <atol>
#
# <folder> holds times.txt (the output times) and, per subject i = 0, 1, ...: s<i>_x0.txt
# (the state after the dose at times[1]) and s<i>_pieces.txt (one row per piece between
# breakpoints: a, b, last (1 for the last piece), then c (n values), then A row-major (n*n
# values)). Writes s<i>_states.txt (the states at the output times, one row per time) and
# seconds.txt: the elapsed time of the integrations alone (reading and writing excluded,
# after one untimed warm-up solve of the first subject; the mean of as many passes over
# the subjects as fill 0.2 s).
suppressPackageStartupMessages(library(deSolve))
args <- commandArgs(trailingOnly = TRUE)
folder <- args[1]; so <- args[2]; rtol <- as.numeric(args[3]); atol <- as.numeric(args[4])
dyn.load(so)
MAXN <- 128
times <- scan(file.path(folder, "times.txt"), quiet = TRUE)
n_subjects <- length(Sys.glob(file.path(folder, "s*_x0.txt")))
inputs <- lapply(seq_len(n_subjects) - 1, function(i) list(
  x0 = scan(file.path(folder, sprintf("s%d_x0.txt", i)), quiet = TRUE),
  pieces = as.matrix(read.table(file.path(folder, sprintf("s%d_pieces.txt", i))))
))
parms_of <- function(row, n) {
  p <- numeric(MAXN * MAXN + MAXN + 1)
  p[seq_len(n * n)] <- row[3 + n + seq_len(n * n)]
  p[MAXN * MAXN + seq_len(n)] <- row[3 + seq_len(n)]
  p[length(p)] <- n
  p
}
solve_subject <- function(s) {
  y <- s$x0; n <- length(y); out <- NULL
  for (k in seq_len(nrow(s$pieces))) {
    row <- s$pieces[k, ]; a <- row[1]; b <- row[2]
    keep <- if (row[3] == 1) times >= a & times <= b else times >= a & times < b
    grid <- sort(unique(c(a, times[keep], b)))
    sol <- ode(y, grid, func = "derivs", parms = parms_of(row, n), dllname = "linear",
               initfunc = "initmod", jacfunc = "jac", jactype = "fullusr", nout = 0,
               method = "lsoda", rtol = rtol, atol = atol, maxsteps = 1e6)
    states <- sol[, -1, drop = FALSE]
    out <- rbind(out, states[grid %in% times[keep], , drop = FALSE])
    y <- as.numeric(states[nrow(states), ])
  }
  out
}
invisible(solve_subject(inputs[[1]]))  # warm-up, untimed (R's first ode() call loads code)
# repeated until 0.2 s have passed (R's clock ticks in ms): the time of one pass over all
reps <- 0; t0 <- proc.time()[["elapsed"]]
repeat {
  results <- lapply(inputs, solve_subject)
  reps <- reps + 1
  if (proc.time()[["elapsed"]] - t0 >= 0.2) break
}
seconds <- (proc.time()[["elapsed"]] - t0) / reps
for (i in seq_along(results))
  write.table(results[[i]], file.path(folder, sprintf("s%d_states.txt", i - 1)),
              row.names = FALSE, col.names = FALSE)
writeLines(format(seconds, digits = 15), file.path(folder, "seconds.txt"))
