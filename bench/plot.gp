# gnuplot script for bench/run: IOPS against queue depth and against
# connections, one line per server. bench/run writes the data files and calls
#   gnuplot -e "dir='RESULTS_DIR'" bench/plot.gp
# Data files: qd.dat (QD, then one column per server), conns-read.dat and
# conns-write.dat (connections, then one column per server); "?" = missing.
if (!exists("dir")) dir = "."
set terminal pngcairo size 1500,500 font ",10"
set output dir."/plot.png"
set datafile missing "?"
set key top left
set grid
set style data linespoints
set multiplot layout 1,3 title "nbdd vs peers, network path (fio nbd engine, Unix socket, in-memory backends)"

set title "4k random read, 1 connection"
set xlabel "queue depth"
set ylabel "IOPS"
set logscale x 2
set yrange [0:*]
plot for [i=2:*] dir."/qd.dat" using 1:i title columnhead(i) lw 2

unset logscale x
set xtics 1
set title "4k random read, QD32 per connection"
set xlabel "connections (fio numjobs)"
plot for [i=2:*] dir."/conns-read.dat" using 1:i title columnhead(i) lw 2

set title "4k random write, QD32 per connection"
plot for [i=2:*] dir."/conns-write.dat" using 1:i title columnhead(i) lw 2
unset multiplot
