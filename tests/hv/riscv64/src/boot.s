// Entry in M-mode (QEMU virt, -bios none), the HS-mode trap vector and the
// world switch.

.section .text.boot, "ax"
.global _start
_start:
    csrr    t0, mhartid
    bnez    t0, 3f
    la      sp, __stack_top
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  call    m_main          // sets up M-mode and mret-s to hs_entry
3:  wfi
    j       3b

// HS-mode starts here (mret from m_main).
.section .text, "ax"
.global hs_entry
hs_entry:
    la      sp, __stack_top
    la      t0, hv_trap
    csrw    stvec, t0
    call    hv_main
4:  wfi
    j       4b

// Traps taken in M-mode: always a bug.
.balign 4
.global m_trap
m_trap:
    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    j       m_unexpected

// hv_enter(vcpu: *mut Vcpu { x: [u64; 4], pc: u64 }): saves ra and s0-s11
// and the vcpu pointer on the stack, leaves the stack pointer in sscratch
// and enters VS-mode at pc with a0..a3 set (the caller has set
// hstatus.SPV and sstatus.SPP). A trap from the guest comes back to
// hv_trap, which stores the guest's a0..a3 and returns from hv_enter.
.global hv_enter
hv_enter:
    addi    sp, sp, -112
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
    ld      t0, 32(a0)
    csrw    sepc, t0
    ld      a1, 8(a0)
    ld      a2, 16(a0)
    ld      a3, 24(a0)
    ld      a0, 0(a0)
    sret

.balign 4
.global hv_trap
hv_trap:
    // hstatus.SPV (bit 7): the trap came from the guest (V = 1).
    csrr    t0, 0x600
    andi    t0, t0, 0x80
    beqz    t0, 5f
    csrrw   sp, sscratch, sp
    ld      t0, 104(sp)
    sd      a0, 0(t0)
    sd      a1, 8(t0)
    sd      a2, 16(t0)
    sd      a3, 24(t0)
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
    addi    sp, sp, 112
    ret
5:  // A trap from HS-mode itself: a hypervisor bug.
    csrr    a0, scause
    csrr    a1, sepc
    csrr    a2, stval
    j       hs_unexpected
