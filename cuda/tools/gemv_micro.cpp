// Micro-benchmarks of the CPU decode GEMV's F16 inner loop (AVX2 + FMA + F16C), kept as the evidence for
// cuda/BENCH_CPU.md's 2026-12-05 section; not part of the build.
//   g++ -O2 -mavx2 -mfma -mf16c -std=c++17 -o /tmp/gemv_micro cuda/tools/gemv_micro.cpp -lpthread && /tmp/gemv_micro
// hot: one thread, one 384 x 576 F16 matrix in L2, repeated: the loop's own throughput (bytes of weights per second)
//      with the F16C conversion, with an integer bit-move conversion, the conversion alone, the FMAs alone, a plain read.
// stream: SmolLM-135M's decode matrix sequence (269 MB, huge pages), 2 threads, a spin join after every matrix,
//      access patterns alternated within the process: 1 row / 4 accumulators with software prefetch 1-8 KiB ahead or
//      none (the engine's kernel is 1 row, 4 KiB), 2 rows at once, and a plain read of the same bytes.
#include <immintrin.h>
#include <sys/mman.h>
#include <atomic>
#include <thread>
#include <vector>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <cstdint>
struct Mat { const uint16_t *w; int rows, cols; };
static inline float hsum(__m256 v){__m128 s=_mm_add_ps(_mm256_castps256_ps128(v),_mm256_extractf128_ps(v,1));s=_mm_add_ps(s,_mm_movehl_ps(s,s));s=_mm_add_ss(s,_mm_movehdup_ps(s));return _mm_cvtss_f32(s);}
template<int PF> static void row1(const uint16_t*W,int cols,int r,const float*x,float*y){
  const char*rp=(const char*)(W+(size_t)r*cols); __m256 a0=_mm256_setzero_ps(),a1=a0,a2=a0,a3=a0; int c=0;
  for(;c+32<=cols;c+=32){ if(PF>0)_mm_prefetch(rp+c*2+PF,_MM_HINT_T0);
    a0=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(rp+c*2))),_mm256_loadu_ps(x+c),a0);
    a1=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(rp+c*2+16))),_mm256_loadu_ps(x+c+8),a1);
    a2=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(rp+c*2+32))),_mm256_loadu_ps(x+c+16),a2);
    a3=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(rp+c*2+48))),_mm256_loadu_ps(x+c+24),a3);}
  y[r]=hsum(_mm256_add_ps(_mm256_add_ps(a0,a1),_mm256_add_ps(a2,a3)));
}
// two rows at once (two streams)
template<int PF> static void row2(const uint16_t*W,int cols,int r,const float*x,float*y){
  const char*p0=(const char*)(W+(size_t)r*cols),*p1=p0+cols*2; __m256 a0=_mm256_setzero_ps(),a1=a0,b0=a0,b1=a0;
  for(int c=0;c+32<=cols;c+=32){ if(PF>0){_mm_prefetch(p0+c*2+PF,_MM_HINT_T0);_mm_prefetch(p1+c*2+PF,_MM_HINT_T0);}
    for(int h=0;h<2;h++){ __m256 x0=_mm256_loadu_ps(x+c+h*16),x1=_mm256_loadu_ps(x+c+h*16+8);
      a0=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p0+c*2+h*32))),x0,a0);
      a1=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p0+c*2+h*32+16))),x1,a1);
      b0=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p1+c*2+h*32))),x0,b0);
      b1=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p1+c*2+h*32+16))),x1,b1);}}
  y[r]=hsum(_mm256_add_ps(a0,a1)); y[r+1]=hsum(_mm256_add_ps(b0,b1));
}
static void plain(const uint16_t*W,int cols,int r,const float*x,float*y){ // read only
  const __m256i*p=(const __m256i*)(W+(size_t)r*cols); __m256i s=_mm256_setzero_si256();
  for(int c=0;c<cols*2/32;c++) s=_mm256_xor_si256(s,_mm256_loadu_si256(p+c));
  y[r]=(float)_mm256_extract_epi32(s,0);
}

// four rows at once, x loaded once per 8 columns for all four
template<int PF> static void row4(const uint16_t*W,int cols,int r,const float*x,float*y){
  const char*p0=(const char*)(W+(size_t)r*cols); const size_t rs=(size_t)cols*2;
  __m256 a0=_mm256_setzero_ps(),a1=a0,a2=a0,a3=a0,b0=a0,b1=a0,b2=a0,b3=a0;
  for(int c=0;c+16<=cols;c+=16){ if(PF>0 && (c&31)==0){for(int i=0;i<4;i++)_mm_prefetch(p0+i*rs+c*2+PF,_MM_HINT_T0);}
    __m256 x0=_mm256_loadu_ps(x+c), x1=_mm256_loadu_ps(x+c+8);
    a0=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p0+c*2))),x0,a0);
    a1=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p0+rs+c*2))),x0,a1);
    a2=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p0+2*rs+c*2))),x0,a2);
    a3=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p0+3*rs+c*2))),x0,a3);
    b0=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p0+c*2+16))),x1,b0);
    b1=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p0+rs+c*2+16))),x1,b1);
    b2=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p0+2*rs+c*2+16))),x1,b2);
    b3=_mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p0+3*rs+c*2+16))),x1,b3);}
  y[r]=hsum(_mm256_add_ps(a0,b0)); y[r+1]=hsum(_mm256_add_ps(a1,b1)); y[r+2]=hsum(_mm256_add_ps(a2,b2)); y[r+3]=hsum(_mm256_add_ps(a3,b3));
}
// integer f16 -> f32 bit move (magnitude << 13, sign << 16), the 2^112 exponent rebias folded into the row's sum
static inline __m256 h2f_int(const char*p){ __m256i h=_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p));
  __m256i m=_mm256_slli_epi32(_mm256_and_si256(h,_mm256_set1_epi32(0x7fff)),13); __m256i s=_mm256_slli_epi32(_mm256_and_si256(h,_mm256_set1_epi32(0x8000)),16);
  return _mm256_castsi256_ps(_mm256_or_si256(m,s)); }
// (throughput only: drops the sign, so not a conversion)
static inline __m256 h2f_int_nosign(const char*p){ __m256i h=_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(h,13)); }
template<int S> static void row1i(const uint16_t*W,int cols,int r,const float*x,float*y){
  const char*rp=(const char*)(W+(size_t)r*cols); __m256 a0=_mm256_setzero_ps(),a1=a0,a2=a0,a3=a0; int c=0;
  for(;c+32<=cols;c+=32){
    a0=_mm256_fmadd_ps(S?h2f_int(rp+c*2):h2f_int_nosign(rp+c*2),_mm256_loadu_ps(x+c),a0);
    a1=_mm256_fmadd_ps(S?h2f_int(rp+c*2+16):h2f_int_nosign(rp+c*2+16),_mm256_loadu_ps(x+c+8),a1);
    a2=_mm256_fmadd_ps(S?h2f_int(rp+c*2+32):h2f_int_nosign(rp+c*2+32),_mm256_loadu_ps(x+c+16),a2);
    a3=_mm256_fmadd_ps(S?h2f_int(rp+c*2+48):h2f_int_nosign(rp+c*2+48),_mm256_loadu_ps(x+c+24),a3);}
  y[r]=hsum(_mm256_add_ps(_mm256_add_ps(a0,a1),_mm256_add_ps(a2,a3)))*5.192296858534828e33f;
}
static void cvtonly(const uint16_t*W,int cols,int r,const float*x,float*y){
  const char*rp=(const char*)(W+(size_t)r*cols); __m256 a0=_mm256_setzero_ps(),a1=a0;
  for(int c=0;c+16<=cols;c+=16){ a0=_mm256_or_ps(a0,_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(rp+c*2)))); a1=_mm256_or_ps(a1,_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(rp+c*2+16))));}
  y[r]=hsum(_mm256_add_ps(a0,a1)); }
static void fmaonly(const uint16_t*W,int cols,int r,const float*x,float*y){ // f32 FMAs on x (L1), no weight loads
  __m256 a0=_mm256_setzero_ps(),a1=a0,a2=a0,a3=a0; __m256 w=_mm256_set1_ps(1.0001f);
  for(int c=0;c+32<=cols;c+=32){ a0=_mm256_fmadd_ps(w,_mm256_loadu_ps(x+c),a0);a1=_mm256_fmadd_ps(w,_mm256_loadu_ps(x+c+8),a1);a2=_mm256_fmadd_ps(w,_mm256_loadu_ps(x+c+16),a2);a3=_mm256_fmadd_ps(w,_mm256_loadu_ps(x+c+24),a3);}
  y[r]=hsum(_mm256_add_ps(_mm256_add_ps(a0,a1),_mm256_add_ps(a2,a3))); }

typedef void(*RowFn)(const uint16_t*,int,int,const float*,float*);
std::atomic<int> gen{0}, done{0}; std::vector<Mat> mats; float X[49152], Y[49152]; int variant=0; RowFn fns[8]; int step[8];
static void run_mat(int t,const Mat&m){ int half=(m.rows/2)&~1; int r0=t?half:0,r1=t?m.rows:half; RowFn f=fns[variant]; for(int r=r0;r<r1;r+=step[variant]) f(m.w,m.cols,r,X,Y);}
static void stream(){
  size_t total=0; std::vector<std::pair<int,int>> shapes;
  for(int l=0;l<30;l++){shapes.push_back({960,576});shapes.push_back({576,576});shapes.push_back({3072,576});shapes.push_back({576,1536});}
  shapes.push_back({49152,576});
  for(auto&s:shapes) total+=(size_t)s.first*s.second*2;
  size_t al=(total+(2<<20))&~((size_t)(2<<20)-1);
  char*buf=(char*)mmap(0,al,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0); madvise(buf,al,MADV_HUGEPAGE);
  for(size_t i=0;i<total/2;i++) ((uint16_t*)buf)[i]=0x3c00^(i&0x3ff);
  size_t off=0; for(auto&s:shapes){mats.push_back({(const uint16_t*)(buf+off),s.first,s.second}); off+=(size_t)s.first*s.second*2;}
  for(int i=0;i<49152;i++)X[i]=1e-3f*(i%7);
  fns[0]=row1<4096>;step[0]=1; fns[1]=row1<0>;step[1]=1; fns[2]=row2<4096>;step[2]=2; fns[3]=row1<1024>;step[3]=1; fns[4]=row1<8192>;step[4]=1; fns[5]=plain;step[5]=1; fns[6]=row2<0>;step[6]=2;
  const char*names[]={"row1 pf4K","row1 nopf","row2 pf4K","row1 pf1K","row1 pf8K","plain read","row2 nopf"};
  std::thread w([&]{ int g=0; for(;;){ int ng; while((ng=gen.load(std::memory_order_acquire))==g) _mm_pause(); if(ng<0) return; g=ng; for(size_t i=0;i<mats.size();i++){ run_mat(1,mats[i]); // per-matrix join
      done.fetch_add(1,std::memory_order_acq_rel); while(done.load(std::memory_order_acquire)<(int)(2*(i+1))) _mm_pause(); } } });
  std::vector<double> ts[7]; int g=0;
  for(int it=0;it<12;it++) for(int v=0;v<7;v++){ variant=v; done.store(0); auto t0=std::chrono::steady_clock::now(); gen.store(++g,std::memory_order_release);
    for(size_t i=0;i<mats.size();i++){ run_mat(0,mats[i]); done.fetch_add(1,std::memory_order_acq_rel); while(done.load(std::memory_order_acquire)<(int)(2*(i+1))) _mm_pause(); }
    double ms=std::chrono::duration<double,std::milli>(std::chrono::steady_clock::now()-t0).count(); if(it>0) ts[v].push_back(ms); }
  gen.store(-1); w.join();
  for(int v=0;v<7;v++){ auto&a=ts[v]; std::sort(a.begin(),a.end()); printf("%-12s median %.2f ms (%.1f GB/s) min %.2f\n",names[v],a[a.size()/2],total/a[a.size()/2]/1e6,a[0]); }
}

static void hot(int ROWS){ const int rows=ROWS, cols=576; std::vector<uint16_t> W((size_t)rows*cols); for(size_t i=0;i<W.size();i++)W[i]=0x3c00^(i&0x3ff);
 std::vector<float> x(cols,0.001f), y(rows);
 RowFn f[]={row1<0>,row1i<1>,row1i<0>,cvtonly,fmaonly,plain}; int st[]={1,1,1,1,1,1}; const char*n[]={"row1","row1 int-cvt","row1 int-cvt nosign","cvt only","fma only (x)","plain"};
 for(int v=0;v<6;v++){ double best=1e9; for(int it=0;it<50;it++){ auto t0=std::chrono::steady_clock::now(); for(int rep=0;rep<100*384/rows;rep++) for(int r=0;r<rows;r+=st[v]) f[v](W.data(),cols,r,x.data(),y.data());
   double s=std::chrono::duration<double>(std::chrono::steady_clock::now()-t0).count(); if(s<best)best=s;}
   printf("%s hot: %.1f GB/s per thread\n",n[v],(double)rows*cols*2*(100*384/rows)/best/1e9);} }

int main(){ hot(384); stream(); }
