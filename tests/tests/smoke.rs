use npt::{
    flush::Recorder, x86_64::Ept4, GuestPhysAddr as Gpa, HostPhysAddr as Hpa, MappingFlags as MF,
    NestedTable,
};
use npt_tests::Frames;

#[test]
fn smoke() {
    let mut t = NestedTable::<Ept4, Frames>::try_new().unwrap();
    println!("{:?} root reg {:#x}", t, t.root_register());
    let f = t
        .map_region(
            Gpa::from(0x4000_0000),
            Hpa::from(0x1_0000_0000),
            0x40_1000,
            MF::READ | MF::WRITE,
            true,
        )
        .unwrap();
    println!("{f:?}");
    f.ignore();
    t.for_each_leaf(|l| println!("{l:x?}"));
    let mut rec = Recorder::default();
    t.unmap(Gpa::from(0x4040_0000))
        .unwrap()
        .1
        .flush_with(&mut rec)
        .unwrap();
    println!("{:?}", rec);
    println!(
        "{:?}",
        npt::x86_64::EptEntry::from(0x1_0000_0000 | 0x37 | 0x80)
    );
}
