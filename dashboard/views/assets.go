package views

import (
	"strconv"

	"encore.app/monitoring/health"
)

// InstanceRowView is one row of the instance table.
type InstanceRowView = health.InstanceRow

func itoa(n int) string { return strconv.Itoa(n) }

// styles is the page's whole stylesheet (no external assets).
const styles = `
body{font:14px/1.4 system-ui,sans-serif;margin:1rem 2rem;color:#111;background:#fafafa}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem}
.note{color:#666;font-size:.85rem;margin:.2rem 0}
.flag .state-on{color:#16a34a}.flag .state-off{color:#dc2626}.flag .state-unknown{color:#666}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:.6rem;margin:.6rem 0}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6rem .8rem}
.card .label{color:#555;font-size:.8rem}.card .value{font-size:1.6rem;font-weight:600}.card .sub{color:#666;font-size:.8rem}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:.6rem}
.chart{background:#fff;border:1px solid #ddd;border-radius:6px;margin:0;padding:.5rem}
.chart svg{width:100%;height:auto;display:block}.axis{stroke:#999;stroke-width:1}.tick{font-size:10px;fill:#666}
.legend{list-style:none;padding:0;margin:.2rem 0;display:flex;flex-wrap:wrap;gap:.8rem;font-size:.8rem}
.swatch[data-color="#2563eb"]{color:#2563eb}.swatch[data-color="#16a34a"]{color:#16a34a}.swatch[data-color="#9333ea"]{color:#9333ea}
.swatch[data-color="#ea580c"]{color:#ea580c}.swatch[data-color="#dc2626"]{color:#dc2626}.swatch[data-color="#6b7280"]{color:#6b7280}
.tables{display:flex;flex-wrap:wrap;gap:1rem;margin:.8rem 0}
table{border-collapse:collapse;background:#fff}caption{text-align:left;font-weight:600;padding:.2rem 0}
th,td{border:1px solid #ddd;padding:.2rem .5rem;text-align:right}th[scope=row]{text-align:left;font-weight:normal}
.instances{width:100%;margin:.8rem 0}.breaker-open{color:#dc2626}.breaker-half_open{color:#ea580c}
.savings table{margin:.4rem 1rem .4rem 0;display:inline-table;vertical-align:top}
.presence table{margin:.4rem 0}
`

// liveScript subscribes to the events URL and swaps the #live region with each
// fragment. Without JavaScript the page stays a static snapshot.
const liveScript = `(function(){
var live=document.getElementById('live'),status=document.getElementById('live-status');
if(!window.EventSource||!live)return;
var n=0,es=new EventSource(live.getAttribute('data-events'));
es.addEventListener('live',function(e){live.innerHTML=e.data;n++;document.body.setAttribute('data-updates',String(n));status.textContent='Live: updated '+n+(n==1?' time':' times')+', every '+(live.getAttribute('data-interval')||'few')+' s';});
es.addEventListener('unavailable',function(){status.textContent='Figures unavailable; retrying';});
es.onerror=function(){status.textContent='Live updates interrupted; retrying';};
})();`
