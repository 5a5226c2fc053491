#!/bin/bash
# A/B of the agent's push formats on one host (docs/benchmarks.md, "What the
# lean push costs the agent"): a local server, a busy workload with varied
# stacks (xz -1 and a Python JSON/sort loop), two `fleetprof agent` processes
# at the defaults (19 Hz, 10 s), one --push-format lean and one pprof, each
# with its own spool; CPU (utime+stime) of each from /proc/PID/stat over a
# window after a warm-up. Needs root (BPF); run from a built tree.
#   bash bench/agent-lean-ab.sh <tree, e.g. .> <lean-first|pprof-first> [window s, 180] [warm-up s, 60]
# LEAN_ARGS / PPROF_ARGS add arguments to one agent (e.g. LEAN_ARGS="--spool failure").
ROOT=$1; ORDER=$2; DUR=${3:-180}; WARM=${4:-60}
D=${AB_DIR:-/tmp/fleetprof-ab}; rm -rf $D; mkdir -p $D/data $D/spool-lean $D/spool-pprof
cd $ROOT
node dist/src/cli.js server --data-dir $D/data --port 4288 > $D/server.log 2>&1 &
SRV=$!
sleep 2
( while true; do head -c 20000000 /dev/urandom | xz -1 > /dev/null; done ) &
W1=$!
python3 -c "
import json, random
while True:
    d=[{'k':random.random(),'v':[random.randint(0,99) for _ in range(20)]} for _ in range(2000)]
    s=json.dumps(d); json.loads(s); sorted(d,key=lambda x:x['k'])
" &
W2=$!
lean() { node dist/src/cli.js agent --server http://127.0.0.1:4288 --label ab=lean --push-format lean --spool-dir $D/spool-lean --metrics-port 9471 $LEAN_ARGS > $D/lean.log 2>&1 & A1=$!; }
pprof() { node dist/src/cli.js agent --server http://127.0.0.1:4288 --label ab=pprof --push-format pprof --spool-dir $D/spool-pprof --metrics-port 9472 $PPROF_ARGS > $D/pprof.log 2>&1 & A2=$!; }
if [ "$ORDER" = lean-first ]; then lean; sleep 1; pprof; else pprof; sleep 1; lean; fi
cpu() { awk '{print ($14+$15)/100}' /proc/$1/stat; }
sys() { awk '{print $15/100}' /proc/$1/stat; }
sleep $WARM
l0=$(cpu $A1); p0=$(cpu $A2); s0=$(cpu $SRV); ls0=$(sys $A1); ps0=$(sys $A2); up0=$(cut -d' ' -f1-3 /proc/loadavg)
sleep $DUR
l1=$(cpu $A1); p1=$(cpu $A2); s1=$(cpu $SRV); ls1=$(sys $A1); ps1=$(sys $A2); up1=$(cut -d' ' -f1-3 /proc/loadavg)
curl -s 127.0.0.1:9471/metrics | grep -E "^fleetprof_agent_(pushes|push_bytes|push_stacks|cache_bytes)" > $D/lean.metrics
curl -s 127.0.0.1:9472/metrics | grep -E "^fleetprof_agent_(pushes|push_bytes)" > $D/pprof.metrics
echo "$(date -u +%H:%M) root=$ROOT order=$ORDER lean+[$LEAN_ARGS] pprof+[$PPROF_ARGS] over $DUR s after $WARM s: lean $(echo "$l1-$l0"|bc) s, pprof $(echo "$p1-$p0"|bc) s, ratio $(echo "scale=3;($l1-$l0)/($p1-$p0)"|bc), server $(echo "$s1-$s0"|bc) s; of which system time: lean $(echo "$ls1-$ls0"|bc) s, pprof $(echo "$ps1-$ps0"|bc) s; rss lean $(grep VmRSS /proc/$A1/status|awk '{print $2}') kB pprof $(grep VmRSS /proc/$A2/status|awk '{print $2}') kB; load start $up0 end $up1"
cat $D/lean.metrics $D/pprof.metrics
kill $A1 $A2 $W2; kill $W1; sleep 4; kill $SRV; wait 2>/dev/null
