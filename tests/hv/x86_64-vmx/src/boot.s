// The Intel VMX hypervisor's own assembly: the boot sector Bochs's BIOS
// runs, the way from real mode to `_start` (../../common/x86_longmode.s,
// 32-bit protected mode with flat segments), and the world switch.
// AT&T syntax.

// The boot sector, at 0x7c00 in real mode with the boot drive in dl. It
// reads the rest of the image (__image_sectors sectors from LBA 1) to
// 0x7e00 with INT 13h AH=42h (extended read, 64 sectors at a time),
// enables A20 (port 0x92), loads the GDT and enters protected mode.
.section .boot, "ax"
.code16
.global boot_sector
boot_sector:
    cli
    xorw    %ax, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movw    $0x7c00, %sp
    ljmp    $0, $1f
1:  movb    %dl, boot_drive
    movw    $__image_sectors, %bx       // sectors left
2:  movw    %bx, %ax
    cmpw    $64, %ax
    jbe     3f
    movw    $64, %ax
3:  movw    %ax, dap_count
    movw    $dap, %si
    movb    boot_drive, %dl
    movb    $0x42, %ah
    int     $0x13
    jc      boot_fail
    movw    dap_count, %ax
    subw    %ax, %bx
    addw    %ax, dap_lba
    shlw    $5, %ax                     // 512-byte sectors in 16-byte paragraphs
    addw    %ax, dap_segment
    testw   %bx, %bx
    jnz     2b

    inb     $0x92, %al                  // fast A20
    orb     $2, %al
    andb    $0xfe, %al
    outb    %al, $0x92
    lgdtl   boot_gdt_ptr                // the GDT may lie above 64 KiB; this pointer does not
    movl    %cr0, %eax
    orl     $1, %eax
    movl    %eax, %cr0
    ljmpl   $0x18, $protected_mode

boot_fail:
    movw    $boot_msg, %si
4:  lodsb
    testb   %al, %al
    jz      5f
    outb    %al, $0xe9
    jmp     4b
5:  hlt
    jmp     5b

boot_msg:
    .asciz "PANIC: the boot sector's disk read failed\n"
boot_drive:
    .byte 0
boot_gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt
.balign 4
dap:                                    // INT 13h AH=42h disk address packet
    .byte 16, 0
dap_count:
    .word 0
    .word 0                             // offset
dap_segment:
    .word 0x07e0                        // 0x7e00
dap_lba:
    .quad 1

.section .text.boot, "ax"
.code32
protected_mode:
    movw    $0x10, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movw    %ax, %fs
    movw    %ax, %gs
    jmp     _start

// vmx_run(regs: *mut [u64; 4] [rdi], launched: u64 [rsi]) -> u64: runs the
// guest with rdi, rsi, rdx, rcx = regs[0..4] (VMLAUNCH the first time,
// VMRESUME after) until its next VM exit, then stores the guest's rdi, rsi,
// rdx, rcx back into regs and returns 0. If the instruction fails, returns
// 1 for VMfailInvalid (CF) and 2 for VMfailValid (ZF). A VM exit loads
// the host state the VMCS holds: rsp from HOST_RSP (written here, pointing
// at the saved regs pointer), rip from HOST_RIP (vmx_exit), segments and
// control registers; the callee-saved registers are kept on the stack.
.section .text, "ax"
.code64
.global vmx_run
vmx_run:
    pushq   %rbx
    pushq   %rbp
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    pushq   %rdi
    movq    $0x6c14, %rax               // HOST_RSP
    vmwrite %rsp, %rax
    movq    $0x6c16, %rax               // HOST_RIP
    leaq    vmx_exit(%rip), %rdx
    vmwrite %rdx, %rax
    movq    %rsi, %r8
    movq    %rdi, %rax
    movq    0(%rax), %rdi
    movq    8(%rax), %rsi
    movq    16(%rax), %rdx
    movq    24(%rax), %rcx
    testq   %r8, %r8
    jnz     1f
    vmlaunch
    jmp     2f
1:  vmresume
2:  // Only on failure: CF = VMfailInvalid, ZF = VMfailValid.
    movl    $1, %eax
    jc      3f
    movl    $2, %eax
3:  popq    %rdi
    jmp     vmx_return

vmx_exit:
    xchgq   (%rsp), %rdi                // rdi = regs; the guest's rdi on the stack
    movq    %rsi, 8(%rdi)
    movq    %rdx, 16(%rdi)
    movq    %rcx, 24(%rdi)
    popq    %rsi
    movq    %rsi, 0(%rdi)
    xorl    %eax, %eax
vmx_return:
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbp
    popq    %rbx
    ret
