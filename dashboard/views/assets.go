package views

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

func itoa(n int) string   { return strconv.Itoa(n) }
func u64(n uint64) string { return strconv.FormatUint(n, 10) }
func boolAttr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func inspectQuery(m Model) string {
	if m.Admin == nil || m.Admin.Inspect == nil {
		return ""
	}
	return m.Admin.Inspect.Query
}

// faviconURI is the page's icon, inline (no request, no 404): a dot with two waves.
const faviconURI = "data:image/svg+xml," +
	"%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E" +
	"%3Crect width='32' height='32' rx='7' fill='%230b5cad'/%3E" +
	"%3Ccircle cx='10' cy='22' r='3.5' fill='%23fff'/%3E" +
	"%3Cpath d='M10 13a9 9 0 0 1 9 9M10 6a16 16 0 0 1 16 16' stroke='%23fff' stroke-width='3' fill='none' stroke-linecap='round'/%3E" +
	"%3C/svg%3E"

// styles is the page's whole stylesheet (no external assets). No element has a fixed
// width: grids use minmax(min(100%, N), 1fr), long words wrap, and tables of class
// "stack" become one labelled block per row under 760 px.
const styles = `
:root{--fg:#1d232a;--muted:#57606a;--bg:#f3f5f7;--panel:#fff;--line:#d8dee4;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--accent:#0b5cad;
--c1:#2563eb;--c2:#16a34a;--c3:#9333ea;--c4:#ea580c;--c5:#dc2626;--c6:#6b7280}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:var(--fg);background:var(--bg);overflow-wrap:break-word}
h1{font-size:1.25rem;margin:0}h2{font-size:1rem;margin:0 0 .5rem}h3{font-size:.9rem;margin:0 0 .4rem}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--bg);padding:0 3px;border-radius:3px;overflow-wrap:anywhere}
.note{color:var(--muted);font-size:.85rem;margin:.2rem 0}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.top{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem 1rem;padding:.7rem 1rem;background:var(--panel);border-bottom:1px solid var(--line)}
.top #live-status{flex:1 1 16rem;text-align:right}
.range{display:flex;border:1px solid var(--line);border-radius:6px;overflow:hidden}
.range a{padding:.25rem .7rem;color:var(--accent);text-decoration:none}
.range a[aria-current]{background:var(--accent);color:#fff;font-weight:600}
main{padding:.8rem 1rem 2rem;display:grid;gap:.8rem}
#live{display:grid;gap:.8rem;min-width:0}
.status{display:flex;flex-wrap:wrap;align-items:center;gap:.3rem 1.2rem}
.status p{margin:0}
.badge{display:inline-block;padding:0 .5rem;border-radius:10px;font-weight:600;font-size:.8rem;background:#e6e9ec;color:var(--fg);margin-left:.2rem}
.state-on,.breaker-closed{background:var(--ok);color:#fff}.state-off,.breaker-open{background:var(--bad);color:#fff}
.breaker-half-open{background:var(--warn);color:#fff}
.alerts ul{list-style:none;margin:0;padding:0;display:grid;gap:.3rem}
.alert{margin:0;padding:.45rem .7rem;border-radius:6px;border-left:4px solid var(--muted);background:var(--panel)}
.alert.bad{border-color:var(--bad);background:#fff0f0}.alert.warn{border-color:var(--warn);background:#fff8e1}.alert.ok{border-color:var(--ok)}
.alert.info{border-color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:.6rem}
@media(min-width:720px){.cards{grid-template-columns:repeat(3,minmax(0,1fr))}}
@media(min-width:1180px){.cards{grid-template-columns:repeat(6,minmax(0,1fr))}}
.card,.panel,.chart{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:.6rem .8rem;min-width:0}
.card .label{color:var(--muted);font-size:.8rem}
.card .value{font-size:1.5rem;font-weight:650;font-variant-numeric:tabular-nums;line-height:1.3}
.card .sub{color:var(--muted);font-size:.78rem}
.card .tag{font-size:.7rem;font-weight:600;color:var(--muted);border:1px solid var(--line);border-radius:4px;padding:0 .3rem;vertical-align:middle}
.card.alert,.panel.alert{border-color:var(--bad);box-shadow:inset 0 3px 0 var(--bad)}
.charts{display:grid;grid-template-columns:minmax(0,1fr);gap:.6rem}
@media(min-width:760px){.charts{grid-template-columns:repeat(2,minmax(0,1fr))}}
@media(min-width:1500px){.charts{grid-template-columns:repeat(4,minmax(0,1fr))}}
.chart{margin:0}
.chart figcaption{margin-bottom:.3rem}.unit{color:var(--muted);font-size:.8rem}
.plot{position:relative;height:120px;margin-left:3.4rem;border-left:1px solid #9aa4ae;border-bottom:1px solid #9aa4ae}
.plot svg{width:100%;height:100%;display:block;overflow:visible}
.plot .ymax,.plot .y0{position:absolute;right:100%;margin-right:.3rem;font-size:.72rem;color:var(--muted);white-space:nowrap}
.plot .ymax{top:-.45rem}.plot .y0{bottom:-.45rem}
.grid{stroke:#e3e7eb;stroke-width:1;vector-effect:non-scaling-stroke}
.xaxis{display:flex;justify-content:space-between;margin-left:3.4rem;font-size:.72rem;color:var(--muted)}
.ln{fill:none;stroke-width:1.8;stroke-linejoin:round}.ln.dash{stroke-dasharray:4 3}
.c1{stroke:var(--c1)}.c2{stroke:var(--c2)}.c3{stroke:var(--c3)}.c4{stroke:var(--c4)}.c5{stroke:var(--c5)}.c6{stroke:var(--c6)}
.legend{list-style:none;padding:0;margin:.4rem 0 0;display:flex;flex-wrap:wrap;gap:.2rem .9rem;font-size:.8rem}
.legend .last{font-weight:600;font-variant-numeric:tabular-nums}
.sw{display:inline-block;width:.8rem;height:.2rem;margin-right:.3rem;vertical-align:middle;border-radius:1px}
.sw.c1{background:var(--c1)}.sw.c2{background:var(--c2)}.sw.c3{background:var(--c3)}.sw.c4{background:var(--c4)}.sw.c5{background:var(--c5)}.sw.c6{background:var(--c6)}
.sw.dash{background:none;border-top:2px dashed currentColor;height:0}
.sw.dash.c2{color:var(--c2)}.sw.dash.c4{color:var(--c4)}
.reasons{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,250px),1fr));gap:.6rem;align-items:start}
.reason h3{display:flex;justify-content:space-between}.reason .total{font-variant-numeric:tabular-nums}
.spark{display:flex;align-items:center;gap:.5rem;margin:.1rem 0 .4rem}.spark svg{flex:1;height:22px;min-width:0}
.spark .now{font-size:.75rem;color:var(--muted);white-space:nowrap}
.bars{list-style:none;margin:0;padding:0;display:grid;gap:.2rem;font-size:.82rem}
.bars li{display:grid;grid-template-columns:minmax(0,1fr) minmax(2rem,35%) auto;gap:.5rem;align-items:center}
.bars .name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.bars .n{font-variant-numeric:tabular-nums;text-align:right;min-width:2.5rem}
.bar{width:100%;height:8px;display:block}.bar rect{fill:var(--c1)}.panel.alert .bar rect{fill:var(--bad)}
.wide{min-width:0}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{border-bottom:1px solid var(--line);padding:.3rem .5rem;text-align:right;font-variant-numeric:tabular-nums}
td{white-space:nowrap}th[scope=row]{overflow-wrap:anywhere}
th[scope=row],thead th:first-child{text-align:left}thead th{color:var(--muted);font-weight:600;font-size:.78rem}
tr.stale{background:#fff8e1}td.bad{color:var(--bad);font-weight:600}
.scroll{overflow-x:auto}
.barcell{width:25%}
@media(max-width:759px){
table.stack thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
table.stack,table.stack tbody,table.stack tr,table.stack th,table.stack td{display:block;width:auto}
table.stack tr{border:1px solid var(--line);border-radius:6px;margin:.4rem 0;padding:.2rem .5rem}
table.stack th[scope=row]{font-weight:650;border:none;padding:.2rem 0}
table.stack td{display:flex;justify-content:space-between;gap:1rem;border:none;padding:.1rem 0;white-space:normal}
table.stack td::before{content:attr(data-label);color:var(--muted);text-align:left}
table.stack td.barcell{display:none}
}
details summary{cursor:pointer;color:var(--accent);margin:.5rem 0}
.savings .cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,380px),1fr));gap:.4rem 2rem;align-items:start}
.savings .cols p{margin-top:0}
.tools{display:grid;gap:.6rem}
.toolgrid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,340px),1fr));gap:.6rem;align-items:start}
form.row{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center}
form.row input:not([type=hidden]){flex:1 1 12rem;min-width:0;max-width:32rem}
form.grid{display:grid;grid-template-columns:auto minmax(0,1fr);gap:.35rem .6rem;align-items:center}
input,textarea{font:inherit;padding:.3rem .5rem;border:1px solid #8c959f;border-radius:4px;width:100%;min-width:0;background:#fff;color:var(--fg)}
textarea{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
button{font:inherit;padding:.3rem .9rem;border:1px solid var(--accent);background:var(--accent);color:#fff;border-radius:4px;cursor:pointer}
button.link{background:none;border:none;color:var(--accent);padding:0;text-decoration:underline}
.error{color:var(--bad);font-weight:600}.ok{color:var(--ok)}.warn{color:var(--warn)}
.conn{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,9rem),1fr));gap:.3rem .8rem;margin:.5rem 0;padding:.5rem;border:1px solid var(--line);border-radius:6px;font-size:.82rem}
.conn div{min-width:0}.conn .full{grid-column:1/-1}.conn dt{color:var(--muted);font-size:.75rem}.conn dd{margin:0;font-variant-numeric:tabular-nums}
.signout{justify-self:end}
`

// liveScript subscribes to the events URL and swaps the #live region with each
// fragment, keeping <details> open that the operator opened. The range links switch
// the stream to the other range without a reload. Without JavaScript the page stays a
// static snapshot and the links reload it.
const liveScript = `(function(){
var live=document.getElementById('live'),status=document.getElementById('live-status');
if(!window.EventSource||!live||!window.URL)return;
var n=0,es=null,every=live.getAttribute('data-interval')||'few';
function swap(html){
var open={};live.querySelectorAll('details[open][id]').forEach(function(d){open[d.id]=1;});
live.innerHTML=html;
live.querySelectorAll('details[id]').forEach(function(d){if(open[d.id])d.open=true;});
}
function connect(url){
if(es)es.close();
es=new EventSource(url);
es.addEventListener('live',function(e){swap(e.data);n++;document.body.setAttribute('data-updates',String(n));status.textContent='Live: updated '+n+(n==1?' time':' times')+', every '+every+' s';});
es.addEventListener('unavailable',function(){status.textContent='Figures unavailable; retrying';});
es.onerror=function(){status.textContent='Live updates interrupted; retrying';};
}
connect(live.getAttribute('data-events'));
document.querySelectorAll('.range a[data-range]').forEach(function(a){a.addEventListener('click',function(ev){
ev.preventDefault();var r=a.getAttribute('data-range');
document.querySelectorAll('.range a').forEach(function(b){if(b===a)b.setAttribute('aria-current','true');else b.removeAttribute('aria-current');});
var u=new URL(live.getAttribute('data-events'),location.href);u.searchParams.set('range',r);live.setAttribute('data-events',u.pathname+u.search);
var p=new URL(location.href);p.searchParams.set('range',r);history.replaceState(null,'',p.pathname+p.search+p.hash);
document.querySelectorAll('input[type=hidden][name=range]').forEach(function(i){i.value=r;});
connect(u.pathname+u.search);
});});
})();`

// ContentSecurityPolicy is the page's policy: its one inline script and stylesheet by
// hash, the favicon as data:, the event stream and forms to this origin only, and no
// framing (the publish form cannot be clickjacked).
var ContentSecurityPolicy = "default-src 'none'; script-src '" + sha256Source(liveScript) +
	"'; style-src '" + sha256Source(styles) + "'; img-src data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func sha256Source(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}
