// The HS-mode trap vector and world switch for a whole guest (U-Boot):
// every general-purpose and FP register and sepc are saved on each exit and
// restored on each entry. The guest's VS CSRs are its own (the hardware
// swaps them with V).
//
// struct Ctx: x[32] at 0 (x[0] unused), pc (sepc) at 256, f[32] at 264,
// fcsr at 520. sscratch holds the hypervisor's frame while the guest runs
// and 0 while the hypervisor does.

.section .text, "ax"
.option push
.option arch, +d

// uv_enter(ctx: *mut Ctx): saves ra, s0-s11 and ctx on the stack and enters
// the guest (the caller has set hstatus.SPV and sstatus.SPP); returns when
// the guest traps.
.global uv_enter
uv_enter:
    addi    sp, sp, -128
    sd      ra, 0(sp)
    sd      s0, 8(sp)
    sd      s1, 16(sp)
    sd      s2, 24(sp)
    sd      s3, 32(sp)
    sd      s4, 40(sp)
    sd      s5, 48(sp)
    sd      s6, 56(sp)
    sd      s7, 64(sp)
    sd      s8, 72(sp)
    sd      s9, 80(sp)
    sd      s10, 88(sp)
    sd      s11, 96(sp)
    sd      a0, 104(sp)
    csrw    sscratch, sp
    ld      t0, 256(a0)
    csrw    sepc, t0
    mv      t0, a0
    fld     f0, 264(t0)
    fld     f1, 272(t0)
    fld     f2, 280(t0)
    fld     f3, 288(t0)
    fld     f4, 296(t0)
    fld     f5, 304(t0)
    fld     f6, 312(t0)
    fld     f7, 320(t0)
    fld     f8, 328(t0)
    fld     f9, 336(t0)
    fld     f10, 344(t0)
    fld     f11, 352(t0)
    fld     f12, 360(t0)
    fld     f13, 368(t0)
    fld     f14, 376(t0)
    fld     f15, 384(t0)
    fld     f16, 392(t0)
    fld     f17, 400(t0)
    fld     f18, 408(t0)
    fld     f19, 416(t0)
    fld     f20, 424(t0)
    fld     f21, 432(t0)
    fld     f22, 440(t0)
    fld     f23, 448(t0)
    fld     f24, 456(t0)
    fld     f25, 464(t0)
    fld     f26, 472(t0)
    fld     f27, 480(t0)
    fld     f28, 488(t0)
    fld     f29, 496(t0)
    fld     f30, 504(t0)
    fld     f31, 512(t0)
    ld      t1, 520(a0)
    fscsr   t1
    ld      x1, 8(a0)
    ld      x2, 16(a0)
    ld      x3, 24(a0)
    ld      x4, 32(a0)
    ld      x5, 40(a0)
    ld      x6, 48(a0)
    ld      x7, 56(a0)
    ld      x8, 64(a0)
    ld      x9, 72(a0)
    ld      x11, 88(a0)
    ld      x12, 96(a0)
    ld      x13, 104(a0)
    ld      x14, 112(a0)
    ld      x15, 120(a0)
    ld      x16, 128(a0)
    ld      x17, 136(a0)
    ld      x18, 144(a0)
    ld      x19, 152(a0)
    ld      x20, 160(a0)
    ld      x21, 168(a0)
    ld      x22, 176(a0)
    ld      x23, 184(a0)
    ld      x24, 192(a0)
    ld      x25, 200(a0)
    ld      x26, 208(a0)
    ld      x27, 216(a0)
    ld      x28, 224(a0)
    ld      x29, 232(a0)
    ld      x30, 240(a0)
    ld      x31, 248(a0)
    ld      x10, 80(a0)
    sret

.balign 4
.global uv_trap
uv_trap:
    csrrw   sp, sscratch, sp
    bnez    sp, 1f
    // From HS-mode itself (sscratch was 0): a hypervisor bug.
    csrrw   sp, sscratch, sp
    csrr    a0, scause
    csrr    a1, sepc
    csrr    a2, stval
    j       hs_unexpected
1:  sd      t0, 112(sp)
    ld      t0, 104(sp)
    sd      x1, 8(t0)
    sd      x3, 24(t0)
    sd      x4, 32(t0)
    sd      x6, 48(t0)
    sd      x7, 56(t0)
    sd      x8, 64(t0)
    sd      x9, 72(t0)
    sd      x10, 80(t0)
    sd      x11, 88(t0)
    sd      x12, 96(t0)
    sd      x13, 104(t0)
    sd      x14, 112(t0)
    sd      x15, 120(t0)
    sd      x16, 128(t0)
    sd      x17, 136(t0)
    sd      x18, 144(t0)
    sd      x19, 152(t0)
    sd      x20, 160(t0)
    sd      x21, 168(t0)
    sd      x22, 176(t0)
    sd      x23, 184(t0)
    sd      x24, 192(t0)
    sd      x25, 200(t0)
    sd      x26, 208(t0)
    sd      x27, 216(t0)
    sd      x28, 224(t0)
    sd      x29, 232(t0)
    sd      x30, 240(t0)
    sd      x31, 248(t0)
    ld      t1, 112(sp)
    sd      t1, 40(t0)
    csrrw   t1, sscratch, zero
    sd      t1, 16(t0)
    csrr    t1, sepc
    sd      t1, 256(t0)
    fsd     f0, 264(t0)
    fsd     f1, 272(t0)
    fsd     f2, 280(t0)
    fsd     f3, 288(t0)
    fsd     f4, 296(t0)
    fsd     f5, 304(t0)
    fsd     f6, 312(t0)
    fsd     f7, 320(t0)
    fsd     f8, 328(t0)
    fsd     f9, 336(t0)
    fsd     f10, 344(t0)
    fsd     f11, 352(t0)
    fsd     f12, 360(t0)
    fsd     f13, 368(t0)
    fsd     f14, 376(t0)
    fsd     f15, 384(t0)
    fsd     f16, 392(t0)
    fsd     f17, 400(t0)
    fsd     f18, 408(t0)
    fsd     f19, 416(t0)
    fsd     f20, 424(t0)
    fsd     f21, 432(t0)
    fsd     f22, 440(t0)
    fsd     f23, 448(t0)
    fsd     f24, 456(t0)
    fsd     f25, 464(t0)
    fsd     f26, 472(t0)
    fsd     f27, 480(t0)
    fsd     f28, 488(t0)
    fsd     f29, 496(t0)
    fsd     f30, 504(t0)
    fsd     f31, 512(t0)
    frcsr   t1
    sd      t1, 520(t0)
    ld      ra, 0(sp)
    ld      s0, 8(sp)
    ld      s1, 16(sp)
    ld      s2, 24(sp)
    ld      s3, 32(sp)
    ld      s4, 40(sp)
    ld      s5, 48(sp)
    ld      s6, 56(sp)
    ld      s7, 64(sp)
    ld      s8, 72(sp)
    ld      s9, 80(sp)
    ld      s10, 88(sp)
    ld      s11, 96(sp)
    addi    sp, sp, 128
    ret
.option pop
