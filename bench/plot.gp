# bench/results.png from bench/report.lua's data files.
#   gnuplot -e "outfile='results.png'; dir='/tmp/.../plot'" bench/plot.gp
set terminal pngcairo size 1400,700 font "sans,9"
set output outfile
set multiplot layout 1,2
set style fill solid 0.8 border -1
set boxwidth 0.7
set grid ytics
set xtics rotate by -35 left nomirror
set key off
set bmargin 9
set rmargin 14

set title "1. Sequential GET /Certificates/{id} (nginx): req/s, median with min-max"
set ylabel "requests per second"
set yrange [0:*]
plot dir.'/seq.dat' using 0:2:xtic(1) with boxes lc rgb "#4a7ebb", \
     '' using 0:2:3:4 with yerrorbars lc rgb "black" pt 0

set title "3. Fan-out: wall time, median with min-max (log scale; orange = lua-keyfactor)"
set ylabel "milliseconds"
set logscale y
set yrange [*:*]
plot dir.'/fan.dat' using 0:2:($5 == 1 ? 0xe07b2a : 0x4a7ebb):xtic(1) with boxes lc rgb variable, \
     '' using 0:2:3:4 with yerrorbars lc rgb "black" pt 0
unset multiplot
