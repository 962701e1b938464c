# results.gp - tests/bench/results.svg from the data file bench.mjs writes
# (tests/bench/results.dat, one line per level N).  bench.mjs runs:
#   gnuplot -e "dat='results.dat'; out='results.svg'; subtitle='...'" results.gp
# Columns: 1 N, 2/3 naiberd relay p99 up/down (ms), 4/5 relayfloor proc
# relay p99 caller->agent / agent->caller (ms), 6/7 CPU-s per call-minute
# naiberd / floor, 8 setup p99 (ms), 9 handoff p99 (ms), 10 upgrade round
# trip p99 (ms); "-" = not measured.

if (!exists("dat")) dat = "results.dat"
if (!exists("out")) out = "results.svg"
if (!exists("subtitle")) subtitle = ""

set terminal svg size 960,860 dynamic enhanced font "sans,13" background "white"
set output out
set datafile missing "-"

set style line 1 lc rgb "#1f5fbf" lw 2 pt 7 ps 0.8 dt 1
set style line 2 lc rgb "#c0392b" lw 2 pt 5 ps 0.8 dt 1
set style line 3 lc rgb "#1f5fbf" lw 2 pt 6 ps 0.9 dt 2
set style line 4 lc rgb "#c0392b" lw 2 pt 4 ps 0.9 dt 2
set style line 5 lc rgb "#1e8449" lw 2 pt 9 ps 1.0 dt 1
set style line 6 lc rgb "#555555" lw 1.5 dt 3
set style line 7 lc rgb "#1e8449" lw 1.5 dt 3
set grid xtics ytics mxtics mytics lc rgb "#e0e0e0" lw 1 dt 1

set logscale x 10
set xtics ("1" 1, "2" 2, "5" 5, "10" 10, "20" 20, "50" 50, "100" 100, \
    "200" 200, "500" 500, "1000" 1000, "2000" 2000)
set format y "%g"
# Both panels share the plot width; the keys sit to the right of it.
set lmargin at screen 0.09
set rmargin at screen 0.60
set key at screen 0.62, graph 1 left top vertical Left reverse samplen 3 spacing 1.2 nobox

# Some room left and right of the first and last level.
stats dat using 1 nooutput
xlo = STATS_min / 1.4
xhi = STATS_max * 1.4
set xrange [xlo:xhi]

set multiplot layout 2,1 title "naiberd vs relayfloor proc (a bare process-per-call relay) at the same N\n{/*0.8 ".subtitle."}"

# --- top: latency p99, log scale
set logscale y 10
set ylabel "p99 (ms, log scale)"
set xlabel ""
set format x ""
plot dat using 1:2 with linespoints ls 1 title "naiberd relay caller→agent", \
     dat using 1:3 with linespoints ls 2 title "naiberd relay agent→caller", \
     dat using 1:4 with linespoints ls 3 title "floor relay caller→agent", \
     dat using 1:5 with linespoints ls 4 title "floor relay agent→caller", \
     dat using 1:8 with linespoints ls 5 title "naiberd setup (start→first audio)", \
     5 ls 6 title "5 ms: relay target", \
     30 ls 7 title "30 ms: setup target"

# --- bottom: CPU per call-minute, linear
unset logscale y
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set ylabel "CPU-s per call-minute"
set xlabel "concurrent calls N (log scale)"
set format x "%g"
set xtics ("1" 1, "2" 2, "5" 5, "10" 10, "20" 20, "50" 50, "100" 100, \
    "200" 200, "500" 500, "1000" 1000, "2000" 2000)
plot dat using 1:6 with linespoints ls 1 title "naiberd (supervisor + workers)", \
     dat using 1:7 with linespoints ls 3 title "floor: relayfloor proc relays", \
     dat using 1:($7 > 0 ? 1.1 * $7 : NaN) with lines ls 6 title "1.1 × floor (target at N = 50, 200)"

unset multiplot
