"""The style and the map script of the ``lookalike report`` site (:mod:`.site`), inlined into
its ``index.html``. Plain strings rather than package files: the page is written whole by
Python, and there is nothing to serve.

The map is a 2-D canvas: the points are written straight into an ``ImageData`` buffer (a
million points redraw in a few tens of milliseconds), hovering looks the nearest point up in
a uniform grid built once, and no library or network is involved.
"""

from __future__ import annotations

__all__ = ["MAP_SCRIPT", "SITE_STYLE"]

SITE_STYLE = """
header{position:sticky;top:0;background:Canvas;z-index:2}
.tabs{display:flex;gap:1em;margin:.2em 0 .4em}.tabs a{color:inherit}
main>section{margin:1.5em 0;scroll-margin-top:5em}
h2{font-size:1.15em;margin:.4em 0}
table.summary th{text-align:left;padding:.15em 1em .15em 0;color:var(--dim);font-weight:600}
table.summary td{word-break:break-all}
.controls{display:flex;flex-wrap:wrap;gap:.5em 1em;align-items:center;margin:.4em 0}
.mapbox{position:relative;display:flex;gap:1em;align-items:flex-start}
#canvas{width:calc(100% - 16em);height:72vh;border:1px solid var(--line);border-radius:6px;cursor:crosshair;
  background:#fff;touch-action:none}
#legend{width:15em;max-height:72vh;overflow:auto;margin:0;padding:0;list-style:none;font-size:.85em}
#legend li{display:flex;gap:.4em;align-items:center;white-space:nowrap}
#legend i{display:inline-block;width:.8em;height:.8em;border-radius:50%;flex:none}
#tip{position:absolute;pointer-events:none;background:Canvas;border:1px solid var(--line);border-radius:6px;
  padding:.3em;max-width:220px;font-size:.8em;box-shadow:0 2px 8px #0003;z-index:1;word-break:break-all}
#tip img{display:block;max-width:128px;max-height:128px;margin:0 auto .2em;background:#fff}
"""

MAP_SCRIPT = r"""
(function(){
"use strict";
var D=window.LOOKALIKE_REPORT,canvas=document.getElementById("canvas"),tip=document.getElementById("tip");
var legend=document.getElementById("legend"),colorby=document.getElementById("colorby");
if(!D){canvas.replaceWith(document.createTextNode("data.js is missing: keep it beside index.html."));return;}
function buffer(b64){var s=atob(b64),u=new Uint8Array(s.length);for(var i=0;i<s.length;i++)u[i]=s.charCodeAt(i);
  return u.buffer;}
var n=D.count,xy=new Float32Array(buffer(D.xy)),detail=new Int32Array(buffer(D.detail));
var PALETTE=["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#bcbd22","#17becf",
  "#aec7e8","#ffbb78","#98df8a","#ff9896","#c5b0d5","#c49c94","#f7b6d2","#dbdb8d","#9edae5","#393b79","#637939"];
var GREY="#bbbbbb",OTHER="#888888";
function rgba32(hex){var v=parseInt(hex.slice(1),16);
  return ((255<<24)|((v&255)<<16)|(((v>>8)&255)<<8)|((v>>16)&255))>>>0;}
// The bounds of the points, and a grid over them for finding the point under the cursor.
var minx=Infinity,maxx=-Infinity,miny=Infinity,maxy=-Infinity,i;
for(i=0;i<n;i++){var x=xy[2*i],y=xy[2*i+1];if(x<minx)minx=x;if(x>maxx)maxx=x;if(y<miny)miny=y;if(y>maxy)maxy=y;}
if(!n){minx=miny=-1;maxx=maxy=1;}
var G=Math.max(1,Math.min(256,Math.ceil(Math.sqrt(n/4)))),gw=(maxx-minx)/G||1,gh=(maxy-miny)/G||1;
var start=new Int32Array(G*G+1),order=new Int32Array(n),cellOf=new Int32Array(n);
for(i=0;i<n;i++){var cx=Math.min(G-1,Math.floor((xy[2*i]-minx)/gw)),cy=Math.min(G-1,Math.floor((xy[2*i+1]-miny)/gh));
  cellOf[i]=cy*G+cx;start[cellOf[i]+1]++;}
for(i=0;i<G*G;i++)start[i+1]+=start[i];
var fill=start.slice(0,G*G);for(i=0;i<n;i++)order[fill[cellOf[i]]++]=i;
// Colour schemes, made when first chosen: a colour per point and the legend's entries.
var schemes={};
function scheme(key){
  if(schemes[key])return schemes[key];
  var c=D.color[key],codes=new Int32Array(buffer(c.codes)),counts=new Map(),j;
  for(j=0;j<n;j++)counts.set(codes[j],(counts.get(codes[j])||0)+1);
  var cats=c.categories.filter(function(k){return counts.has(k.code)}).map(function(k){
    return {code:k.code,name:k.name,grey:!!k.grey,count:counts.get(k.code)}});
  cats.sort(function(a,b){return (a.grey-b.grey)||(b.count-a.count)});
  var colour=new Map(),names=new Map(),legendCats=[],other=0;
  cats.forEach(function(k,rank){names.set(k.code,k.name);
    if(k.grey){colour.set(k.code,GREY);legendCats.push([k.name,GREY,k.count]);}
    else if(rank<PALETTE.length){colour.set(k.code,PALETTE[rank]);legendCats.push([k.name,PALETTE[rank],k.count]);}
    else{colour.set(k.code,OTHER);other+=k.count;}});
  if(other)legendCats.splice(Math.min(PALETTE.length,legendCats.length),0,["other",OTHER,other]);
  var px=new Uint32Array(n),grey=new Uint8Array(n);
  for(j=0;j<n;j++){var h=colour.get(codes[j])||GREY;px[j]=rgba32(h);grey[j]=h===GREY?1:0;}
  return schemes[key]={codes:codes,px:px,grey:grey,names:names,legend:legendCats};
}
var current=scheme("cluster"),view={cx:0,cy:0,s:1},W=0,H=0,dpr=window.devicePixelRatio||1,hover=-1;
function fit(){view.cx=(minx+maxx)/2;view.cy=(miny+maxy)/2;
  view.s=0.92*Math.min(W/((maxx-minx)||1),H/((maxy-miny)||1));}
function toScreen(j){return [(xy[2*j]-view.cx)*view.s+W/2,H/2-(xy[2*j+1]-view.cy)*view.s];}
function toData(sx,sy){return [(sx-W/2)/view.s+view.cx,view.cy-(sy-H/2)/view.s];}
function draw(){
  var ctx=canvas.getContext("2d"),img=ctx.createImageData(W,H),buf=new Uint32Array(img.data.buffer);
  var r=n<3000?2:n<100000?1:0,pass,j;
  for(pass=1;pass>=0;pass--){for(j=0;j<n;j++){if(current.grey[j]!==pass)continue;
    var p=toScreen(j),x0=Math.round(p[0]),y0=Math.round(p[1]);if(x0<r||y0<r||x0>=W-r||y0>=H-r)continue;
    var c=current.px[j];for(var dy=-r;dy<=r;dy++){var row=(y0+dy)*W;for(var dx=-r;dx<=r;dx++)buf[row+x0+dx]=c;}}}
  ctx.putImageData(img,0,0);
  if(hover>=0){var q=toScreen(hover);ctx.beginPath();ctx.arc(q[0],q[1],6*dpr,0,2*Math.PI);
    ctx.lineWidth=2*dpr;ctx.strokeStyle="#000";ctx.stroke();}
}
function showLegend(){legend.textContent="";current.legend.forEach(function(e){
  var li=document.createElement("li"),sw=document.createElement("i"),t=document.createElement("span");
  sw.style.background=e[1];t.textContent=e[0]+" ("+e[2].toLocaleString()+")";li.append(sw,t);legend.append(li);});}
function resize(){W=Math.max(1,Math.round(canvas.clientWidth*dpr));H=Math.max(1,Math.round(canvas.clientHeight*dpr));
  canvas.width=W;canvas.height=H;}
function nearest(sx,sy){
  var d=toData(sx,sy),rad=8*dpr/view.s,best=-1,bd=Infinity;
  var x0=Math.max(0,Math.floor((d[0]-rad-minx)/gw)),x1=Math.min(G-1,Math.floor((d[0]+rad-minx)/gw));
  var y0=Math.max(0,Math.floor((d[1]-rad-miny)/gh)),y1=Math.min(G-1,Math.floor((d[1]+rad-miny)/gh));
  if((x1-x0+1)*(y1-y0+1)>4096)return -1;  // zoomed far out: too many cells to look through
  for(var gy=y0;gy<=y1;gy++)for(var gx=x0;gx<=x1;gx++){var cell=gy*G+gx;
    for(var k=start[cell];k<start[cell+1];k++){var j=order[k],ex=xy[2*j]-d[0],ey=xy[2*j+1]-d[1],dd=ex*ex+ey*ey;
      if(dd<bd&&dd<=rad*rad){bd=dd;best=j;}}}
  return best;
}
function showTip(j,mx,my){
  if(j<0){tip.hidden=true;return;}
  tip.textContent="";var k=detail[j],e=k>=0?D.details[k]:null;
  if(e&&e.thumb){var im=document.createElement("img");im.src=e.thumb;im.alt="";tip.append(im);}
  var cat=document.createElement("div");cat.textContent=current.names.get(current.codes[j])||"";tip.append(cat);
  if(e){var p=document.createElement("div");p.className="dim";p.textContent=e.path;tip.append(p);}
  tip.hidden=false;tip.style.left=(mx+14)+"px";tip.style.top=(my+14)+"px";
}
var drag=null,moved=false;
canvas.addEventListener("pointerdown",function(ev){drag=[ev.clientX,ev.clientY];moved=false;
  canvas.setPointerCapture(ev.pointerId);});
canvas.addEventListener("pointerup",function(ev){
  if(drag&&!moved&&hover>=0&&detail[hover]>=0){var path=D.details[detail[hover]].path;
    window.open("file://"+path.split("/").map(encodeURIComponent).join("/"),"_blank");}
  drag=null;});
canvas.addEventListener("pointermove",function(ev){
  var rect=canvas.getBoundingClientRect(),mx=ev.clientX-rect.left,my=ev.clientY-rect.top;
  if(drag){var dx=ev.clientX-drag[0],dy=ev.clientY-drag[1];if(Math.abs(dx)+Math.abs(dy)>2)moved=true;
    view.cx-=dx*dpr/view.s;view.cy+=dy*dpr/view.s;drag=[ev.clientX,ev.clientY];tip.hidden=true;draw();return;}
  var j=nearest(mx*dpr,my*dpr);if(j!==hover){hover=j;draw();}
  showTip(j,mx+canvas.offsetLeft,my+canvas.offsetTop);});
canvas.addEventListener("pointerleave",function(){hover=-1;tip.hidden=true;draw();});
canvas.addEventListener("wheel",function(ev){ev.preventDefault();
  var rect=canvas.getBoundingClientRect(),sx=(ev.clientX-rect.left)*dpr,sy=(ev.clientY-rect.top)*dpr;
  var before=toData(sx,sy);view.s*=Math.exp(-ev.deltaY*0.0015);var after=toData(sx,sy);
  view.cx+=before[0]-after[0];view.cy+=before[1]-after[1];draw();},{passive:false});
colorby.addEventListener("change",function(){current=scheme(colorby.value);showLegend();draw();});
document.getElementById("reset").addEventListener("click",function(){fit();draw();});
window.addEventListener("resize",function(){resize();fit();draw();});
resize();fit();showLegend();draw();
})();
"""
