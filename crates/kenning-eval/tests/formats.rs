use kenning_eval::formats::{
    parse_boxes, parse_identities, parse_labels, parse_lfw_pairs, parse_pairs_csv,
};
use kenning_eval::report::group_rate_chart;
use kenning_eval::svg::{Bar, BarChart, BarGroup, Series};
use kenning_eval::{bar_chart_svg, det_svg, EvalError};

fn line_of(e: EvalError) -> usize {
    match e {
        EvalError::Parse { line, .. } => line,
        other => panic!("expected a parse error, got {other}"),
    }
}

#[test]
fn identities_and_pairs_csv() {
    let ids = parse_identities("file,identity\na.jpg,p1\n\n\"b, c.jpg\",p2\r\n", "ids").unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1].file, "b, c.jpg");
    assert_eq!(
        line_of(parse_identities("file,identity\na.jpg,p1\na.jpg,p2\n", "ids").unwrap_err()),
        3
    );
    assert!(parse_identities("file,name\n", "ids")
        .unwrap_err()
        .to_string()
        .contains("missing column \"identity\""));

    let pairs = parse_pairs_csv(
        "file_a,file_b,same,fold\na,b,1,0\na,c,false,3\nb,c,yes,\n",
        "p",
    )
    .unwrap();
    assert_eq!((pairs[0].same, pairs[0].fold), (true, Some(0)));
    assert_eq!((pairs[1].same, pairs[1].fold), (false, Some(3)));
    assert_eq!(pairs[2].fold, None);
    let e = parse_pairs_csv("file_a,file_b,same\na,b,1\na,c,maybe\n", "pairs.csv").unwrap_err();
    assert_eq!(
        e.to_string(),
        "pairs.csv:3: same must be 1/0/true/false, got \"maybe\""
    );
}

#[test]
fn lfw_pairs_txt() {
    let text = "2\t1\nAlice\t1\t2\nAlice\t1\tBob\t3\nCarol 4 10\nDan 1 Erin 2\n";
    let p = parse_lfw_pairs(text, "pairs.txt").unwrap();
    assert_eq!(p.len(), 4);
    assert_eq!(
        (p[0].file_a.as_str(), p[0].file_b.as_str(), p[0].same),
        ("Alice/Alice_0001.jpg", "Alice/Alice_0002.jpg", true)
    );
    assert_eq!(
        (p[1].file_b.as_str(), p[1].same, p[1].fold),
        ("Bob/Bob_0003.jpg", false, Some(0))
    );
    assert_eq!(
        (p[2].file_b.as_str(), p[2].fold),
        ("Carol/Carol_0010.jpg", Some(1))
    );
    // A single count means one fold.
    assert_eq!(
        parse_lfw_pairs("1\nA 1 2\nA 1 B 1\n", "x").unwrap()[1].fold,
        Some(0)
    );
    // Wrong shape in the genuine block, a bad number, too few pairs.
    assert_eq!(
        line_of(parse_lfw_pairs("1\nA 1 B 2\nA 1 B 1\n", "x").unwrap_err()),
        2
    );
    assert_eq!(
        line_of(parse_lfw_pairs("1\nA one 2\nA 1 B 1\n", "x").unwrap_err()),
        2
    );
    assert!(parse_lfw_pairs("2 1\nA 1 2\nA 1 B 1\n", "x")
        .unwrap_err()
        .to_string()
        .contains("promises 2 folds"));
    assert_eq!(line_of(parse_lfw_pairs("folds ten\n", "x").unwrap_err()), 1);
}

#[test]
fn labels_and_boxes() {
    let l = parse_labels(
        "file,age,gender,race\na.jpg,30,female,asian\nb.jpg,40,male,\n",
        "labels.csv",
    )
    .unwrap();
    let cols = l.column_indices(&["gender", "race"]).unwrap();
    assert_eq!(l.group_of("a.jpg", &cols).as_deref(), Some("female|asian"));
    assert_eq!(l.group_of("b.jpg", &cols), None);
    assert_eq!(l.group_of("zzz.jpg", &cols), None);
    assert!(l.column_indices(&["skin"]).is_err());

    let b = parse_boxes(
        "file,left,top,width,height,ignore\na.jpg,10,20,30,40,0\na.jpg,1,2,3,4,1\nb.jpg,0,0,5,5,\n",
        "boxes.csv",
    )
    .unwrap();
    assert_eq!(b["a.jpg"].len(), 2);
    assert_eq!(
        (b["a.jpg"][0].bbox.right, b["a.jpg"][0].bbox.bottom),
        (40.0, 60.0)
    );
    assert!(b["a.jpg"][1].ignore && !b["b.jpg"][0].ignore);
    assert_eq!(
        line_of(parse_boxes("file,left,top,width,height\na.jpg,1,2,x,4\n", "b").unwrap_err()),
        2
    );
    assert_eq!(
        line_of(parse_boxes("file,left,top,width,height\na.jpg,1,2,-3,4\n", "b").unwrap_err()),
        2
    );
    assert_eq!(
        line_of(parse_boxes("file,left,top,width,height\n\"a.jpg,1,2,3,4\n", "b").unwrap_err()),
        2
    );
    assert!(parse_boxes("", "b").is_err());
}

#[test]
fn real_data_files_parse() {
    let Some(root) = kenning_testdata::data("formats::real_data_files_parse") else {
        return;
    };
    let ids = kenning_eval::formats::read_identities(&root.join("identity/celeba/identities.csv"))
        .unwrap();
    assert_eq!(ids.len(), 1715);
    let boxes = kenning_eval::formats::read_boxes(&root.join("detection/dlib/boxes.csv")).unwrap();
    assert_eq!(boxes.values().map(Vec::len).sum::<usize>(), 43);
    let labels =
        kenning_eval::formats::read_labels(&root.join("demographics/utkface/labels.csv")).unwrap();
    assert_eq!(labels.rows.len(), 6000);
}

fn well_formed(svg: &str) {
    assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches('<').count(), svg.matches('>').count());
    for tag in ["text", "title"] {
        assert_eq!(
            svg.matches(&format!("<{tag}")).count(),
            svg.matches(&format!("</{tag}>")).count(),
            "{tag}"
        );
    }
}

#[test]
fn svg_plots_render() {
    let s1 = Series {
        name: "dlib <global>".into(),
        points: vec![(1e-5, 0.3), (1e-3, 0.1), (1e-1, 0.01), (1.0, 0.0)],
    };
    let s2 = Series {
        name: "fair".into(),
        points: vec![(1e-4, 0.2), (1e-2, 0.05)],
    };
    let svg = det_svg("DET", &[s1, s2]);
    well_formed(&svg);
    assert!(svg.contains("dlib &lt;global&gt;") && svg.contains("data-series=\"fair\""));
    assert!(svg.contains(">1e-5<") && svg.contains(">0.1<"));

    let chart = BarChart {
        title: "Same-group FMR".into(),
        y_label: "FMR".into(),
        series: vec!["global".into(), "fair".into()],
        groups: vec![
            BarGroup {
                label: "female|asian".into(),
                bars: vec![
                    Some(Bar {
                        value: 1.5e-3,
                        low: Some(1e-3),
                        high: Some(2e-3),
                    }),
                    Some(Bar {
                        value: 1e-4,
                        low: Some(5e-5),
                        high: None,
                    }),
                ],
            },
            BarGroup {
                label: "male|white".into(),
                bars: vec![
                    Some(Bar {
                        value: 0.0,
                        low: None,
                        high: None,
                    }),
                    None,
                ],
            },
        ],
        log_y: true,
        reference: Some((1e-4, "target".into())),
    };
    let svg = bar_chart_svg(&chart);
    well_formed(&svg);
    assert!(
        svg.contains("data-series=\"global\"")
            && svg.contains("female|asian")
            && svg.contains("target")
    );
    let linear = bar_chart_svg(&BarChart {
        log_y: false,
        reference: None,
        ..chart
    });
    well_formed(&linear);
    // Charts from reports: an empty run list gives an empty but valid chart.
    well_formed(&bar_chart_svg(&group_rate_chart("empty", &[], false, None)));
}
